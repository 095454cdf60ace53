package nightshift

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nightshift-jobs/nightshift/envelope"
	"github.com/nightshift-jobs/nightshift/hostproto"
	"github.com/nightshift-jobs/nightshift/record"
	"github.com/nightshift-jobs/nightshift/storage"
)

// Function names served by the handler; each is a folder in functions/ with its
// function.json (the real host and the local host read those).
const (
	// FunctionRunJob runs job messages from the jobs queue.
	FunctionRunJob = "RunJob"
	// FunctionRunDeadLetter records whatever lands on the jobs poison queue.
	FunctionRunDeadLetter = "RunDeadLetter"
	// FunctionRunJobHigh and FunctionRunJobLow run job messages from the jobs-high and
	// jobs-low queues (see Priority and docs/priorities.md).
	FunctionRunJobHigh = "RunJobHigh"
	FunctionRunJobLow  = "RunJobLow"
	// FunctionRunDeadLetterHigh and FunctionRunDeadLetterLow record what lands on the
	// jobs-high and jobs-low poison queues.
	FunctionRunDeadLetterHigh = "RunDeadLetterHigh"
	FunctionRunDeadLetterLow  = "RunDeadLetterLow"
)

// SettingPort is the environment variable the Functions host sets to the port the handler
// must listen on (docs/host-contract.md §1.2).
const SettingPort = "FUNCTIONS_CUSTOMHANDLER_PORT"

// Invocation is one call from the Functions host to a function.
type Invocation struct {
	// Function is the function's name (its folder in functions/).
	Function string
	// ID is the host's invocation id.
	ID string
	// Request is the decoded Data/Metadata body.
	Request *hostproto.InvokeRequest
}

// FunctionFunc serves one function. An error fails the invocation (non-2xx): the host then
// retries or poisons the trigger message by its own rules.
type FunctionFunc func(ctx context.Context, inv *Invocation) (*hostproto.InvokeResponse, error)

// HandlerOptions configure a Handler. The zero value is fine.
type HandlerOptions struct {
	// Logger receives the structured log (JSON on stdout by default).
	Logger *slog.Logger
	// RunningAfter is how long an attempt runs before its status says "running";
	// default 2 s. Quicker jobs cost one status write in all.
	RunningAfter time.Duration
	// CancelCheck is how often the status of a running job is read to notice a
	// cancellation (its context is then cancelled); default 5 s.
	CancelCheck time.Duration
	// OnJobEnd is called after a job whose envelope asks for a callback reaches
	// succeeded or dead (package callback provides one). An error fails the invocation,
	// so the host delivers the message again and the call is retried.
	OnJobEnd func(ctx context.Context, env *envelope.Envelope, st *record.Status) error
	// OnWorkflowEnd is called when a workflow step's end finds its workflow ended
	// (succeeded, failed or cancelled) and the workflow asks for a callback (package
	// callback provides one). It may be called more than once for one workflow (a
	// redelivery, the ends of steps cancelled with it), so it must be idempotent; an
	// error fails the invocation and the call is retried.
	OnWorkflowEnd func(ctx context.Context, w *record.Workflow) error
	// ProgressInterval is the least time between two progress writes of a job; default
	// ProgressInterval (2 s).
	ProgressInterval time.Duration
	// MaxPayloadBytes bounds a job's args, inline or claim-checked (the claim check is
	// never read past it), and the args of jobs enqueued by running jobs; default
	// DefaultMaxPayloadBytes. Serve reads it from NIGHTSHIFT_MAX_PAYLOAD_BYTES.
	MaxPayloadBytes int64
	// MaxDequeueCount is the host's maxDequeueCount (host.json extensions.queues; default
	// DefaultMaxDequeueCount): how many deliveries the host makes before it moves a message
	// to the poison queue. The cause of a host_retries_exhausted dead letter compares the
	// job's recorded runs with it (record.CauseOf).
	MaxDequeueCount int
	// Observer, when set, hears every delivery, callback hook and dead letter (spans and
	// metrics: package nightshiftotel; docs/observability.md). When it is a Tracer too,
	// the jobs that running jobs enqueue are traced with it.
	Observer Observer
}

// DefaultMaxDequeueCount is the host's default maxDequeueCount, which nightshift's
// host.json keeps.
const DefaultMaxDequeueCount = 5

// Handler is the custom handler's HTTP server logic: GET / answers the host's readiness
// probe, POST /{FunctionName} serves an invocation (docs/host-contract.md §1.3–1.8).
type Handler struct {
	exec  *executor
	log   *slog.Logger
	mu    sync.RWMutex
	funcs map[string]FunctionFunc
	jobs  []FunctionSpec // the job and dead-letter functions
}

// NewHandler returns a handler serving RunJobHigh, RunJob and RunJobLow on the jobs-high,
// jobs and jobs-low queues and RunDeadLetterHigh, RunDeadLetter and RunDeadLetterLow on
// their poison queues, with the registry's workers and the given storage.
func NewHandler(reg *Registry, store *storage.Clients, opts *HandlerOptions) *Handler {
	if opts == nil {
		opts = &HandlerOptions{}
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewJSONHandler(os.Stdout, nil))
	}
	runningAfter := opts.RunningAfter
	if runningAfter <= 0 {
		runningAfter = 2 * time.Second
	}
	cancelCheck := opts.CancelCheck
	if cancelCheck <= 0 {
		cancelCheck = 5 * time.Second
	}
	progressInterval := opts.ProgressInterval
	if progressInterval <= 0 {
		progressInterval = ProgressInterval
	}
	maxPayload := opts.MaxPayloadBytes
	if maxPayload <= 0 {
		maxPayload = store.MaxPayloadBytes
	}
	if maxPayload <= 0 {
		maxPayload = DefaultMaxPayloadBytes
	}
	h := &Handler{
		exec: &executor{reg: reg, store: store, log: log, runningAfter: runningAfter,
			cancelCheck: cancelCheck, ext: store, cancels: &cancelWatch{check: CancelJournalCheck},
			client: NewClient(store, &ClientOptions{MaxPayloadBytes: maxPayload, Tracer: tracerOf(opts.Observer)}), progressInterval: progressInterval,
			maxPayload: maxPayload, maxDequeueCount: cmp.Or(max(opts.MaxDequeueCount, 0), DefaultMaxDequeueCount), obs: opts.Observer},
		log:   log,
		funcs: map[string]FunctionFunc{},
	}
	h.exec.features = newFeatures(h.exec, observeCallbacks(opts.Observer, opts.OnJobEnd), opts.OnWorkflowEnd)
	h.jobs = h.jobFunctions(store.Layout)
	for _, f := range h.jobs {
		h.Handle(f.Name, f.Serve)
	}
	return h
}

// jobFunctions are the queue-triggered functions every handler serves: one per priority
// queue, each with its poison sibling, so that the host gives each its own listener and
// concurrency budget (docs/host-contract.md §2.1, §2.2).
func (h *Handler) jobFunctions(l storage.Layout) []FunctionSpec {
	var out []FunctionSpec
	for _, f := range []struct{ run, dead, queue string }{
		{FunctionRunJobHigh, FunctionRunDeadLetterHigh, l.HighQueue()},
		{FunctionRunJob, FunctionRunDeadLetter, l.JobsQueue()},
		{FunctionRunJobLow, FunctionRunDeadLetterLow, l.LowQueue()},
	} {
		poison := l.PoisonQueue(f.queue)
		out = append(out,
			FunctionSpec{Name: f.run, Trigger: TriggerQueue, Queue: f.queue, Serve: h.queueFunction(QueueBinding, f.queue, h.exec.runJob)},
			FunctionSpec{Name: f.dead, Trigger: TriggerQueue, Queue: poison, Serve: h.queueFunction(QueueBinding, poison, h.exec.recordDead)})
	}
	return out
}

// Handle adds or replaces the function served at POST /{name}.
func (h *Handler) Handle(name string, fn FunctionFunc) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.funcs[name] = fn
}

// queueFunction adapts a queue-triggered executor step to a FunctionFunc.
func (h *Handler) queueFunction(binding, queue string, step func(context.Context, delivery) outcome) FunctionFunc {
	return func(ctx context.Context, inv *Invocation) (*hostproto.InvokeResponse, error) {
		body, err := inv.Request.QueueMessage(binding)
		if err != nil {
			return nil, err
		}
		meta, err := inv.Request.QueueMetadata()
		if err != nil {
			return nil, err
		}
		out := step(ctx, delivery{Queue: queue, Body: body, Meta: meta, InvocationID: inv.ID})
		if out.Err != nil {
			return nil, out.Err
		}
		return &hostproto.InvokeResponse{Logs: out.Logs, ReturnValue: map[string]string{"outcome": out.Outcome}}, nil
	}
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/" {
		// Readiness probe and health check: any response counts (§1.3).
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"ok"}`))
		return
	}
	name := strings.TrimPrefix(r.URL.Path, "/")
	h.mu.RLock()
	fn, ok := h.funcs[name]
	h.mu.RUnlock()
	if !ok {
		hostproto.WriteFailure(w, http.StatusNotFound, fmt.Sprintf("no function %q in this handler (functions: %s)", name, strings.Join(h.Functions(), ", ")))
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		hostproto.WriteFailure(w, http.StatusMethodNotAllowed, fmt.Sprintf("function %s is invoked with POST, not %s", name, r.Method))
		return
	}
	inv := &Invocation{Function: name, ID: r.Header.Get(hostproto.HeaderInvocationID)}
	req, err := hostproto.ReadRequest(r)
	if err != nil {
		h.log.Error("bad invocation request", "function", name, "invocation_id", inv.ID, "error", err.Error())
		hostproto.WriteFailure(w, http.StatusBadRequest, err.Error())
		return
	}
	inv.Request = req
	resp, err := fn(r.Context(), inv)
	if err != nil {
		h.log.Error("invocation failed", "function", name, "invocation_id", inv.ID, "error", err.Error())
		status := http.StatusInternalServerError
		var re *hostproto.RequestError
		if errors.As(err, &re) {
			status = http.StatusBadRequest
		}
		hostproto.WriteFailure(w, status, err.Error())
		return
	}
	if err := hostproto.WriteResponse(w, resp); err != nil {
		h.log.Error("writing invocation response", "function", name, "invocation_id", inv.ID, "error", err.Error())
	}
}

// Functions returns the names of the functions the handler serves, sorted.
func (h *Handler) Functions() []string {
	h.mu.RLock()
	defer h.mu.RUnlock()
	out := make([]string, 0, len(h.funcs))
	for n := range h.funcs {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// ServeOptions configure Serve. The zero value reads the process environment.
type ServeOptions struct {
	// Getenv reads settings; default os.Getenv.
	Getenv func(string) string
	// Logger receives the structured log; default JSON on stdout.
	Logger *slog.Logger
	// DrainTimeout bounds how long in-flight invocations may finish after ctx is done
	// (SIGTERM); after it their contexts are cancelled. Default 25 s.
	DrainTimeout time.Duration
	// Handler options (RunningAfter, …); its Logger defaults to Logger.
	Handler HandlerOptions
	// Store, when set, is used instead of building clients from the settings.
	Store *storage.Clients
	// Setup, when set, is called with the handler before serving, to add functions.
	Setup func(h *Handler, store *storage.Clients) error
}

// Serve runs the custom handler until ctx is done: an App of reg with no features (see
// NewApp for one with callbacks, the HTTP API and timers); it builds storage clients from the
// host's settings, listens on 127.0.0.1:$FUNCTIONS_CUSTOMHANDLER_PORT and serves the
// registry's jobs. When ctx ends it stops accepting invocations and waits up to
// DrainTimeout for in-flight jobs; jobs still running then see their context cancelled and
// are recorded as interrupted (retried).
func Serve(ctx context.Context, reg *Registry, opts *ServeOptions) error {
	if opts == nil {
		opts = &ServeOptions{}
	}
	app, err := NewApp(reg, Config{Getenv: opts.Getenv, Logger: opts.Logger, Store: opts.Store,
		Handler: opts.Handler, DrainTimeout: opts.DrainTimeout})
	if err != nil {
		return err
	}
	if opts.Setup != nil {
		if err := opts.Setup(app.handler, app.store); err != nil {
			return err
		}
	}
	return app.Serve(ctx)
}

// serveHandler listens on 127.0.0.1:port and serves h until ctx is done, then drains
// in-flight invocations for up to drain (default 25 s) and cancels the rest.
func serveHandler(ctx context.Context, h *Handler, log *slog.Logger, port int, drain time.Duration, kinds []string) error {
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		return fmt.Errorf("listen on %s=%d: %w", SettingPort, port, err)
	}
	jobCtx, cancelJobs := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelJobs()
	srv := &http.Server{Handler: h, BaseContext: func(net.Listener) context.Context { return jobCtx }, ReadHeaderTimeout: 30 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("handler listening", "addr", ln.Addr().String(), "kinds", kinds)
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	if drain <= 0 {
		drain = 25 * time.Second
	}
	log.Info("draining in-flight invocations", "timeout", drain.String())
	dctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	if err := srv.Shutdown(dctx); err != nil {
		log.Warn("drain deadline passed; interrupting running jobs", "error", err.Error())
		cancelJobs()
		fctx, fcancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer fcancel()
		if err := srv.Shutdown(fctx); err != nil {
			_ = srv.Close()
		}
	}
	log.Info("handler stopped")
	return nil
}

func portFromEnv(getenv func(string) string) (int, error) {
	v := strings.TrimSpace(getenv(SettingPort))
	if v == "" {
		return 0, &storage.SettingError{Setting: SettingPort, Problem: "not set; the Functions host sets it when it starts the handler (for a manual run: " + SettingPort + "=8080)"}
	}
	port, err := strconv.Atoi(v)
	if err != nil || port < 1 || port > 65535 {
		return 0, &storage.SettingError{Setting: SettingPort, Problem: fmt.Sprintf("%q is not a TCP port number (1–65535)", v)}
	}
	return port, nil
}

// compile-time check
var _ http.Handler = (*Handler)(nil)
