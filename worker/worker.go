// Package worker runs a nightshift app as a standalone worker process: it consumes the
// app's queues itself and fires its timers, with no Functions host. It is the local
// host's own queue listener and timer (internal/funchost) driving the app's handler in
// this process, so the queue semantics (batch size and in-flight budget, visibility
// renewal, dequeue count → poison queue, message encoding) and the executor are the ones
// a Functions deployment has, and a status record cannot tell which mode ran a job.
//
// A handler binary becomes a worker with one call in its main (see Main):
//
//	if len(os.Args) > 1 && os.Args[1] == "worker" {
//		os.Exit(worker.Main(ctx, os.Args[2:], newApp))
//	}
//
// The process serves GET /healthz and /readyz, drains on SIGTERM within the drain
// timeout (releasing messages of jobs still running then), logs JSON on stdout and runs
// the recurring jobs and the schedule sweeper under the host's singleton lease, so a
// fleet fires each occurrence once. docs/worker.md describes flags, settings and rules.
package worker

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/internal/funchost"
	"github.com/nightshift-jobs/nightshift/storage"
)

// Settings read by the worker (each the environment fallback of a flag, see Main).
const (
	// SettingConcurrency is the in-flight budget per queue (--concurrency).
	SettingConcurrency = "NIGHTSHIFT_WORKER_CONCURRENCY"
	// SettingHealthAddr is where /healthz and /readyz listen (--health-addr).
	SettingHealthAddr = "NIGHTSHIFT_WORKER_HEALTH_ADDR"
	// SettingDrainTimeout bounds the drain after SIGTERM (--drain-timeout).
	SettingDrainTimeout = "NIGHTSHIFT_WORKER_DRAIN_TIMEOUT"
	// SettingQueues lists the queues to consume (--queues).
	SettingQueues = "NIGHTSHIFT_WORKER_QUEUES"
	// SettingTimers, "false", turns the timers off (--no-timers).
	SettingTimers = "NIGHTSHIFT_WORKER_TIMERS"
	// SettingHostJSON is a host.json to read the queue settings from (--host-json).
	SettingHostJSON = "NIGHTSHIFT_WORKER_HOST_JSON"
	// SettingHostID is the host id naming the timers' lease and status blobs, as on the
	// Functions host; workers of one fleet (and the Functions app they share queues with)
	// must agree on it.
	SettingHostID = funchost.SettingHostID
)

// Defaults of the contract (docs/worker.md).
const (
	// DefaultHealthAddr is where the health endpoints listen.
	DefaultHealthAddr = ":8080"
	// DefaultDrainTimeout fits Kubernetes' default 30 s termination grace period.
	DefaultDrainTimeout = 25 * time.Second
)

// Options configure Run. The zero value is the contract's defaults.
type Options struct {
	// Concurrency is each queue's in-flight budget; 0: host.json's batchSize +
	// newBatchThreshold, like the host.
	Concurrency int
	// HealthAddr is where GET /healthz and /readyz listen; default DefaultHealthAddr; "off"
	// serves none.
	HealthAddr string
	// DrainTimeout is how long in-flight jobs may finish after ctx ends; the messages of
	// jobs still running then are released for another worker. Default
	// DefaultDrainTimeout.
	DrainTimeout time.Duration
	// Queues are the queues to consume, as the layout names them without the prefix
	// ("jobs-high", "jobs"); each brings its poison queue's dead-letter function. Default:
	// every queue an app function listens on.
	Queues []string
	// NoTimers leaves out the timer functions (recurring jobs, the schedule sweeper).
	NoTimers bool
	// HostJSON is the host.json the queue settings come from; default DefaultHostJSON (the
	// repository's). Its customHandler section is ignored.
	HostJSON []byte
	// HostID names the timers' singleton lease and status blobs; default the
	// AzureFunctionsWebHost__hostid setting, else "nightshift-worker" and the name prefix.
	HostID string
	// Logger receives the worker's log; default the app's (JSON on stdout).
	Logger *slog.Logger
	// ReceiveVisibility is the visibility a received message gets, renewed at half of it
	// while its job runs; default the host's 10 min. The messages of a worker that dies
	// without draining (SIGKILL, a lost machine) reappear after it. It has no flag: the
	// host's value is the contract; tests (the crash storm) shorten it.
	ReceiveVisibility time.Duration
}

// Run consumes the app's queues and fires its timers until ctx ends, then drains: it stops
// receiving, waits up to DrainTimeout for in-flight jobs and releases the messages of jobs
// still running (visible again at once, for another worker), and returns nil. It returns an
// error naming the setting when the options or the settings are wrong, and the host's
// error when storage refuses it (e.g. 403).
func Run(ctx context.Context, app *nightshift.App, opts Options) error {
	o := opts.withDefaults(app)
	host, err := newHost(app, o)
	if err != nil {
		return err
	}
	hs := newHealth(app.Store(), host)
	var srv *http.Server
	if o.HealthAddr != "off" {
		ln, err := net.Listen("tcp", o.HealthAddr)
		if err != nil {
			return &storage.SettingError{Setting: SettingHealthAddr, Problem: fmt.Sprintf("--health-addr %q: %v", o.HealthAddr, err)}
		}
		srv = &http.Server{Handler: hs, ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		o.Logger.Info("worker health endpoints listening", "addr", ln.Addr().String())
	}
	o.Logger.Info("worker starting", "host_id", host.HostID(), "functions", functionNames(host),
		"concurrency", host.Config().Queues.BatchSize+host.Config().Queues.NewBatchThreshold, "drain_timeout", o.DrainTimeout.String())
	go func() {
		<-ctx.Done()
		hs.drain()
		o.Logger.Info("worker draining: readyz answers 503, no new messages are taken", "timeout", o.DrainTimeout.String())
	}()
	err = host.Run(ctx)
	hs.drain()
	if srv != nil {
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = srv.Shutdown(sctx)
		cancel()
	}
	if err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	o.Logger.Info("worker stopped")
	return nil
}

// newHost is the local host's listener and timer code over the app's functions, serving
// them with the app's handler in this process.
func newHost(app *nightshift.App, o Options) (*funchost.Host, error) {
	files, err := appFiles(app, o)
	if err != nil {
		return nil, err
	}
	return funchost.NewFS(files, "generated", funchost.Options{
		Getenv: app.Getenv, Logger: o.Logger, HostID: o.HostID, Handler: app.Handler(),
		Concurrency: o.Concurrency, DrainTimeout: o.DrainTimeout, ReleaseOnDrainTimeout: true,
		ReceiveVisibility: o.ReceiveVisibility,
	})
}

func (o Options) withDefaults(app *nightshift.App) Options {
	o.Logger = cmp.Or(o.Logger, app.Logger())
	o.HealthAddr = cmp.Or(o.HealthAddr, DefaultHealthAddr)
	if o.DrainTimeout <= 0 {
		o.DrainTimeout = DefaultDrainTimeout
	}
	if len(o.HostJSON) == 0 {
		o.HostJSON = []byte(DefaultHostJSON)
	}
	o.HostID = cmp.Or(o.HostID, strings.TrimSpace(app.Getenv(SettingHostID)), defaultHostID(app.Store().Layout.Prefix()))
	return o
}

// defaultHostID is "nightshift-worker" followed by the name prefix (so two apps sharing an
// account keep apart), at most 32 characters like a host id.
func defaultHostID(prefix string) string {
	id := "nightshift-worker"
	if prefix != "" {
		id += "-" + strings.ToLower(prefix)
	}
	var b strings.Builder
	for _, r := range id {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') || r == '-' {
			b.WriteRune(r)
		}
	}
	id = b.String()
	if len(id) > 32 {
		id = id[:32]
	}
	return strings.TrimRight(id, "-")
}

func functionNames(h *funchost.Host) []string {
	var out []string
	for _, fn := range h.Functions() {
		out = append(out, fn.Name)
	}
	return out
}

// appFiles is the app folder the host reads: host.json and the function.json of every
// queue function on a selected queue (the app names its queues with the layout's prefix)
// and, unless NoTimers, every timer. HTTP functions stay with the Functions app.
func appFiles(app *nightshift.App, o Options) (appFS, error) {
	files := appFS{"host.json": o.HostJSON}
	want, err := selectedQueues(app.Functions(), app.Store().Layout, o.Queues)
	if err != nil {
		return nil, err
	}
	for _, f := range app.Functions() {
		switch {
		case f.Trigger == nightshift.TriggerQueue && want[f.Queue]:
		case f.Trigger == nightshift.TriggerTimer && !o.NoTimers:
		default:
			continue
		}
		b, err := nightshift.FunctionJSON(f)
		if err != nil {
			return nil, err
		}
		files[f.Name+"/function.json"] = b
	}
	if len(files) == 1 {
		return nil, &storage.SettingError{Setting: SettingQueues, Problem: "nothing to run: no queue selected and the timers are off"}
	}
	return files, nil
}

// selectedQueues is the set of queues whose functions run: every queue function's
// queue when names is empty, else each name (prefixed by the layout) and its poison
// queue. A name no function listens on is an error naming SettingQueues.
func selectedQueues(fns []nightshift.FunctionSpec, layout storage.Layout, names []string) (map[string]bool, error) {
	all := map[string]bool{}
	var known []string
	for _, f := range fns {
		if f.Trigger == nightshift.TriggerQueue {
			all[f.Queue] = true
			known = append(known, f.Queue)
		}
	}
	if len(names) == 0 {
		return all, nil
	}
	want := map[string]bool{}
	for _, name := range names {
		q := layout.Name(name)
		if !all[q] {
			return nil, &storage.SettingError{Setting: SettingQueues, Problem: fmt.Sprintf("--queues: no function of this app listens on queue %q (%s; queues: %s)", name, q, strings.Join(known, ", "))}
		}
		want[q] = true
		want[q+storage.PoisonSuffix] = all[q+storage.PoisonSuffix]
	}
	return want, nil
}

// getenvOS is the environment Main reads its settings from.
var getenvOS = os.Getenv
