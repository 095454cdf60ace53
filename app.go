package nightshift

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"time"

	"github.com/nightshift-jobs/nightshift/envelope"
	"github.com/nightshift-jobs/nightshift/internal/proc"
	"github.com/nightshift-jobs/nightshift/record"
	"github.com/nightshift-jobs/nightshift/storage"
)

// Config configures an App. The zero value reads the process environment and logs JSON on
// stdout.
type Config struct {
	// Getenv reads settings; default os.Getenv. The app reads every setting once, here.
	Getenv func(string) string
	// Logger receives the structured log; default JSON on stdout.
	Logger *slog.Logger
	// Store, when set, is used instead of building clients from the settings (tests use
	// storage.NewMemory). When its MaxPayloadBytes is unset the app reads it from the
	// settings (NIGHTSHIFT_MAX_PAYLOAD_BYTES) and sets it, so that every client and handler
	// built on the store honours it.
	Store *storage.Clients
	// Handler tunes the job handler (RunningAfter, …); its Logger defaults to Logger, and
	// its OnJobEnd runs after the features' end hooks.
	Handler HandlerOptions
	// DrainTimeout bounds how long in-flight invocations may finish after Serve's ctx is
	// done (SIGTERM); after it their contexts are cancelled. Default 25 s.
	DrainTimeout time.Duration
	// Observer, when set, observes the app's jobs (HandlerOptions.Observer, unless Handler
	// sets one) and, when it is a Tracer too, traces the enqueues of the app's client:
	// nightshiftotel.New gives one (docs/observability.md).
	Observer Observer
	// Features are installed in order; a feature that sets the client's callback check
	// (package callback) comes before one that uses the client (package httpapi).
	Features []Feature
}

// Feature is a part of an app that adds job kinds, functions or end hooks: callbacks
// (callback.Feature), the HTTP API (httpapi.Feature), recurring and delayed jobs
// (schedule.Feature), or an application's own.
type Feature interface {
	// Install adds the feature to the app being built. An error stops NewApp.
	Install(a *App) error
}

// FeatureFunc adapts a function to a Feature.
type FeatureFunc func(a *App) error

// Install calls f(a).
func (f FeatureFunc) Install(a *App) error { return f(a) }

// App is the composition root: one registry of job kinds, one set of storage clients and
// settings, the features installed on them, and the functions they serve. NewApp builds it;
// Serve runs it as the Functions custom handler; FunctionFiles renders the function.json
// files the host reads.
type App struct {
	reg           *Registry
	store         *storage.Clients
	getenv        func(string) string
	log           *slog.Logger
	funcs         []FunctionSpec
	endHooks      []func(ctx context.Context, env *envelope.Envelope, st *record.Status) error
	workflowHooks []func(ctx context.Context, w *record.Workflow) error
	check         func(cb envelope.Callback) *envelope.FieldError
	client        *Client
	handler       *Handler
	drain         time.Duration
	tracer        Tracer
	obs           Observer
	installed     bool
}

// NewApp reads the settings, builds the storage clients (unless cfg.Store is given),
// installs the features in order and builds the handler serving the job functions and
// every feature's functions.
func NewApp(reg *Registry, cfg Config) (*App, error) {
	a := &App{reg: reg, getenv: cfg.Getenv, log: cfg.Logger, store: cfg.Store, drain: cfg.DrainTimeout, tracer: tracerOf(cfg.Observer), obs: cfg.Observer}
	if a.getenv == nil {
		a.getenv = os.Getenv
	}
	if a.log == nil {
		a.log = slog.New(slog.NewJSONHandler(os.Stdout, nil))
	}
	if err := a.openStore(cfg.Observer); err != nil {
		return nil, err
	}
	if err := reg.applyLimitsSetting(a.getenv); err != nil {
		return nil, err
	}
	for _, f := range cfg.Features {
		if err := f.Install(a); err != nil {
			return nil, err
		}
	}
	a.installed = true
	hopts := cfg.Handler
	if hopts.Logger == nil {
		hopts.Logger = a.log
	}
	hopts.OnJobEnd = a.chainEndHooks(hopts.OnJobEnd)
	hopts.OnWorkflowEnd = chainWorkflowHooks(a.workflowHooks, hopts.OnWorkflowEnd)
	if hopts.Observer == nil {
		hopts.Observer = cfg.Observer
	}
	a.handler = NewHandler(reg, a.store, &hopts)
	for _, f := range a.funcs {
		for _, j := range a.handler.jobs {
			if j.Name == f.Name {
				return nil, fmt.Errorf("nightshift: function %s is one of the job functions", f.Name)
			}
		}
		a.handler.Handle(f.Name, f.Serve)
	}
	a.funcs = append(slices.Clip(a.handler.jobs), a.funcs...)
	return a, nil
}

// openStore builds the storage clients from the settings (tracing their calls when obs is
// a StorageTracer), unless Config.Store gave them.
func (a *App) openStore(obs Observer) error {
	if a.store == nil {
		store, err := storage.FromEnv(a.getenv, storageOptions(obs))
		if err != nil {
			return err
		}
		a.store = store
		return nil
	}
	if a.store.MaxPayloadBytes <= 0 {
		n, err := MaxPayloadBytesFromEnv(a.getenv)
		if err != nil {
			return err
		}
		a.store.MaxPayloadBytes = n
	}
	return nil
}

// chainEndHooks runs the features' end hooks in install order, then last (the
// configuration's own); the first error stops the chain and fails the invocation, so the
// host delivers the message again.
func (a *App) chainEndHooks(last func(context.Context, *envelope.Envelope, *record.Status) error) func(context.Context, *envelope.Envelope, *record.Status) error {
	hooks := a.endHooks
	if last != nil {
		hooks = append(hooks, last)
	}
	if len(hooks) == 0 {
		return nil
	}
	return func(ctx context.Context, env *envelope.Envelope, st *record.Status) error {
		for _, h := range hooks {
			if err := h(ctx, env, st); err != nil {
				return err
			}
		}
		return nil
	}
}

// Registry returns the app's job kinds, for features to add theirs.
func (a *App) Registry() *Registry { return a.reg }

// Observer returns Config.Observer (nil without one), for features that trace.
func (a *App) Observer() Observer { return a.obs }

// Store returns the app's storage clients.
func (a *App) Store() *storage.Clients { return a.store }

// Getenv reads a setting the way the app does.
func (a *App) Getenv(name string) string { return a.getenv(name) }

// Logger returns the app's logger.
func (a *App) Logger() *slog.Logger { return a.log }

// Handler returns the handler serving the app's functions (nil while features install).
func (a *App) Handler() *Handler { return a.handler }

// Functions returns the functions the app serves: the job and dead-letter functions, then
// the features' in install order.
func (a *App) Functions() []FunctionSpec { return append([]FunctionSpec(nil), a.funcs...) }

// errInstalled is returned by the calls only a feature's Install may make.
var errInstalled = errors.New("nightshift: the app is built; features change it only from Install")

// AddFunction adds a function the app serves. Its name must be new; a feature calls it
// from Install.
func (a *App) AddFunction(f FunctionSpec) error {
	if a.installed {
		return errInstalled
	}
	if err := f.validate(); err != nil {
		return err
	}
	for _, g := range a.funcs {
		if g.Name == f.Name {
			return fmt.Errorf("nightshift: function %s is added twice", f.Name)
		}
	}
	a.funcs = append(a.funcs, f)
	return nil
}

// OnJobEnd adds an end hook: called after a job whose envelope asks for a callback reaches
// succeeded or dead (HandlerOptions.OnJobEnd). A feature calls it from Install.
func (a *App) OnJobEnd(fn func(ctx context.Context, env *envelope.Envelope, st *record.Status) error) error {
	if a.installed {
		return errInstalled
	}
	a.endHooks = append(a.endHooks, fn)
	return nil
}

// OnWorkflowEnd adds a workflow end hook: called when a workflow that asks for a callback
// has ended (HandlerOptions.OnWorkflowEnd). A feature calls it from Install.
func (a *App) OnWorkflowEnd(fn func(ctx context.Context, w *record.Workflow) error) error {
	if a.installed {
		return errInstalled
	}
	a.workflowHooks = append(a.workflowHooks, fn)
	return nil
}

// chainWorkflowHooks runs the features' workflow end hooks in install order, then last
// (the configuration's own); the first error stops the chain.
func chainWorkflowHooks(hooks []func(context.Context, *record.Workflow) error, last func(context.Context, *record.Workflow) error) func(context.Context, *record.Workflow) error {
	if last != nil {
		hooks = append(hooks, last)
	}
	if len(hooks) == 0 {
		return nil
	}
	return func(ctx context.Context, w *record.Workflow) error {
		for _, h := range hooks {
			if err := h(ctx, w); err != nil {
				return err
			}
		}
		return nil
	}
}

// CheckCallback sets the rule the app's client applies to the callbacks jobs ask for
// (ClientOptions.CheckCallback). It must come before the first call of Client.
func (a *App) CheckCallback(fn func(cb envelope.Callback) *envelope.FieldError) error {
	if a.client != nil {
		return errors.New("nightshift: CheckCallback after the app's client was built; install the callback feature first")
	}
	a.check = fn
	return nil
}

// Client returns the app's client, built on first use with the app's storage, payload
// maximum and callback rule: the one the HTTP API enqueues with.
func (a *App) Client() *Client {
	if a.client == nil {
		a.client = NewClient(a.store, &ClientOptions{Logger: a.log, CheckCallback: a.check, Tracer: a.tracer})
	}
	return a.client
}

// Serve runs the app as the Functions custom handler until ctx is done: it listens on
// 127.0.0.1:$FUNCTIONS_CUSTOMHANDLER_PORT, and when ctx ends it drains in-flight
// invocations for up to Config.DrainTimeout; jobs still running then see their context
// cancelled and are recorded as interrupted (retried).
func (a *App) Serve(ctx context.Context) error {
	port, err := portFromEnv(a.getenv)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go proc.WatchParent(ctx, a.getenv, time.Second, func() {
		a.log.Warn("the local host that started this handler is gone; shutting down", "setting", proc.EnvParentPID)
		cancel()
	})
	return serveHandler(ctx, a.handler, a.log, port, a.drain, a.reg.Kinds())
}
