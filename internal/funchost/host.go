// Package funchost is a local stand-in for the Azure Functions host, for custom handler
// apps: it reads the same host.json and <Name>/function.json files the real host reads,
// starts the custom handler the same way, and drives it with the same queue, timer and
// HTTP triggers and blob output bindings, against real Azure Storage or Azurite. With
// Options.Handler it drives an http.Handler in its own process instead of a child (the
// same host-shaped requests), from an app read by NewFS: that is worker mode (package
// worker), so both modes share this one listener and timer.
//
// Behaviour follows docs/host-contract.md; a bare "§N.M" in this package's comments is a
// section of that page. Deviations are marked "Deviation:".
package funchost

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nightshift-jobs/nightshift/internal/proc"
	"github.com/nightshift-jobs/nightshift/internal/store"
	"github.com/nightshift-jobs/nightshift/storage"
)

// Settings read by the local host (app settings, from Options.Settings / Options.Getenv).
const (
	// SettingHostID overrides the computed host id, as on the real host (§3.3).
	SettingHostID = "AzureFunctionsWebHost__hostid"
	// SettingFunctionKey is the key HTTP functions with authLevel function or admin accept
	// locally (x-functions-key header or code= query parameter). When unset, the local
	// host makes up a random key and logs it at start-up.
	SettingFunctionKey = "NIGHTSHIFT_LOCAL_FUNCTION_KEY"
)

// HostVersion is the version the local host reports in X-Azure-Functions-HostVersion and
// User-Agent (§1.4). It is shaped like a v4 host version.
const HostVersion = "4.0.0.0"

// Options configure a Host. The zero value runs against the process environment.
type Options struct {
	// Settings are app settings. The host reads them (before Getenv) and the handler gets
	// them as environment variables on top of the inherited environment (§1.2).
	Settings map[string]string
	// Getenv reads settings not in Settings; default os.Getenv. Storage clients are built
	// with storage.FromEnv from the same settings.
	Getenv func(string) string
	// Logger receives host, invocation and handler console logs; default slog.Default().
	Logger *slog.Logger
	// TimeZone is where timer schedules are evaluated (§3.2); default UTC.
	TimeZone *time.Location
	// HostID names the host in the timer status and lock blobs; default computed like a
	// local Functions host (§3.3), or the AzureFunctionsWebHost__hostid setting.
	HostID string
	// HTTPAddr is where HTTP triggers listen; default 127.0.0.1:7071. The listener is only
	// opened when the app has HTTP functions.
	HTTPAddr string
	// Development mirrors the host's Development environment: maxPollingInterval defaults
	// to 2 s when host.json does not set it (§2.1).
	Development bool
	// Storage tunes the storage SDK clients.
	Storage *storage.Options

	// Now returns the current time; default time.Now. Timer schedules use it.
	Now func() time.Time
	// ListenerLockPeriod is the timer singleton lease (§3.5); default 60 s. Azure Storage
	// accepts 15–60 s.
	ListenerLockPeriod time.Duration
	// ListenerLockRecoveryPollingInterval is how often a non-owner retries the lease
	// (§3.5); default 60 s.
	ListenerLockRecoveryPollingInterval time.Duration
	// HandlerStartTimeout bounds the readiness probe (§1.3); default 30 s.
	HandlerStartTimeout time.Duration
	// ReceiveVisibility is the visibility used when receiving queue messages, renewed at
	// half of it (§2.3); default 10 min.
	ReceiveVisibility time.Duration
	// DrainTimeout is how long Run waits for in-flight invocations after its context is
	// cancelled; default 30 s.
	DrainTimeout time.Duration

	// Handler, when set, serves the invocations in this process: the host sends it the same
	// host-shaped requests it would POST to the custom handler (§1.4), and starts no
	// executable (host.json's customHandler section may then be absent). Worker mode
	// (package worker) runs an app's own handler this way.
	Handler http.Handler
	// Concurrency, when > 0, is each queue listener's in-flight budget instead of
	// host.json's batchSize + newBatchThreshold: a batch is min(batchSize, Concurrency)
	// messages and the next one is fetched once no more than Concurrency minus that are in
	// flight.
	Concurrency int
	// ReleaseOnDrainTimeout: when queue messages are still being processed DrainTimeout
	// after Run's context ends, each is made visible again at once (for another consumer to
	// take) and Run returns without waiting for them; the caller is expected to exit.
	// Default: their invocations are cancelled and Run waits for them to end.
	ReleaseOnDrainTimeout bool
}

// Host is a running or runnable local Functions host.
type Host struct {
	appRoot string
	opts    Options
	getenv  func(string) string
	log     *slog.Logger
	cfg     *HostConfig
	fns     []*Function
	hostID  string
	key     string
	now     func() time.Time

	storesMu sync.Mutex
	stores   map[string]store.Store // by connection name

	containersMu sync.Mutex
	containers   map[containerKey]bool

	workers *workerManager

	// started is closed once Run has started every trigger.
	started chan struct{}
	// inflight holds the queue messages being processed, for ReleaseOnDrainTimeout.
	inflight inflightSet
}

// New reads <appRoot>/host.json and every <appRoot>/<Name>/function.json and validates
// them. Errors name the file and field.
func New(appRoot string, opts Options) (*Host, error) {
	root, err := filepath.Abs(appRoot)
	if err != nil {
		return nil, err
	}
	return newHost(appSource{fsys: os.DirFS(root), root: root}, opts)
}

// NewFS is New reading host.json and the <Name>/function.json files from fsys instead of
// a folder; name labels the files in errors and is the app root the host reports (and
// hashes into its default host id). With Options.Handler the invocations are served in
// this process; without it host.json's customHandler names the executable to start.
func NewFS(fsys fs.FS, name string, opts Options) (*Host, error) {
	return newHost(appSource{fsys: fsys, root: name, inProcess: opts.Handler != nil}, opts)
}

func newHost(src appSource, opts Options) (*Host, error) {
	root := src.root
	var err error
	base := opts.Getenv
	if base == nil {
		base = os.Getenv
	}
	settings := opts.Settings
	getenv := func(k string) string {
		if v, ok := settings[k]; ok {
			return v
		}
		return base(k)
	}
	h := &Host{appRoot: root, opts: opts.withDefaults(), getenv: getenv, stores: map[string]store.Store{}, containers: map[containerKey]bool{},
		started: make(chan struct{})}
	h.log = opts.Logger
	if h.log == nil {
		h.log = slog.Default()
	}
	h.now = opts.Now
	if h.now == nil {
		h.now = time.Now
	}
	h.cfg, err = loadHostConfigFrom(src, getenv, opts.Development, func(f string, a ...any) { h.log.Warn(fmt.Sprintf(f, a...)) })
	if err != nil {
		return nil, err
	}
	h.cfg.Queues = h.cfg.Queues.withBudget(opts.Concurrency)
	h.fns, err = loadFunctions(src, h.cfg, getenv)
	if err != nil {
		return nil, err
	}
	if err := h.checkConnections(); err != nil {
		return nil, err
	}
	h.hostID = cmp.Or(opts.HostID, getenv(SettingHostID), LocalHostID(root))
	h.key = getenv(SettingFunctionKey)
	if h.key == "" {
		b := make([]byte, 16)
		_, _ = rand.Read(b)
		h.key = hex.EncodeToString(b)
	}
	return h, nil
}

// withDefaults fills in the options left zero.
func (o Options) withDefaults() Options {
	if o.TimeZone == nil {
		o.TimeZone = time.UTC
	}
	o.HTTPAddr = cmp.Or(o.HTTPAddr, "127.0.0.1:7071")
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.ListenerLockPeriod, 60*time.Second)
	def(&o.ListenerLockRecoveryPollingInterval, 60*time.Second)
	def(&o.HandlerStartTimeout, 30*time.Second)
	def(&o.ReceiveVisibility, 10*time.Minute)
	def(&o.DrainTimeout, 30*time.Second)
	return o
}

// checkConnections builds every connection the functions use now, so a bad setting fails
// at start-up.
func (h *Host) checkConnections() error {
	for _, fn := range h.fns {
		for _, b := range fn.Bindings {
			t := strings.ToLower(b.Type)
			if t != "queuetrigger" && t != "blob" {
				continue
			}
			if _, err := h.storageFor(b.Connection); err != nil {
				return &ConfigError{File: fn.File, Field: "connection", Problem: err.Error()}
			}
		}
	}
	if hasTimer(h.fns) {
		if _, err := h.storageFor(""); err != nil {
			return fmt.Errorf("timer triggers need the host storage (AzureWebJobsStorage): %w", err)
		}
	}
	return nil
}

func hasTimer(fns []*Function) bool {
	for _, fn := range fns {
		if fn.schedule.expr != "" {
			return true
		}
	}
	return false
}

// withBudget applies an in-flight budget n (Options.Concurrency) when n > 0.
func (q QueueOptions) withBudget(n int) QueueOptions {
	if n > 0 {
		q.BatchSize = min(q.BatchSize, n)
		q.NewBatchThreshold = n - q.BatchSize
	}
	return q
}

// Started is closed once Run has started every trigger's listener.
func (h *Host) Started() <-chan struct{} { return h.started }

// Functions returns the loaded functions, sorted by name.
func (h *Host) Functions() []*Function { return h.fns }

// Config returns the effective host.json settings.
func (h *Host) Config() *HostConfig { return h.cfg }

// HostID returns the host id used for timer status and lock blobs.
func (h *Host) HostID() string { return h.hostID }

// FunctionKey returns the key HTTP functions with authLevel function/admin accept.
func (h *Host) FunctionKey() string { return h.key }

// QueueName returns the resolved queue name of a queue-triggered function ("" otherwise).
func (f *Function) QueueName() string { return f.queueName }

var nonAlnum = regexp.MustCompile(`[^A-Za-z0-9]`)

// LocalHostID computes the host id the way a local Functions host does (§3.3):
// {machine name, alphanumerics only}-{abs(stable hash of the app root)}, lower-cased,
// truncated to 32 characters, trailing '-' trimmed.
func LocalHostID(appRoot string) string {
	name, _ := os.Hostname()
	name = nonAlnum.ReplaceAllString(name, "")
	var hash int32 = 23 // Utility.GetStableHash: 23, then hash*31 + char (UTF-16 units)
	for _, r := range appRoot {
		if r > 0xFFFF {
			r1, r2 := utf16Pair(r)
			hash = hash*31 + int32(r1)
			hash = hash*31 + int32(r2)
			continue
		}
		hash = hash*31 + int32(r)
	}
	h := int64(hash)
	if h < 0 {
		h = -h
	}
	id := strings.ToLower(fmt.Sprintf("%s-%d", name, h))
	if len(id) > 32 {
		id = id[:32]
	}
	return strings.TrimRight(id, "-")
}

func utf16Pair(r rune) (rune, rune) {
	r -= 0x10000
	return 0xD800 + (r>>10)&0x3FF, 0xDC00 + r&0x3FF
}

// storageFor returns the storage boundary for a binding's connection name, resolved like
// the host (§4.1): empty means "Storage"; AzureWebJobs{name} is tried before {name}. The
// store is made once per connection name.
func (h *Host) storageFor(connection string) (store.Store, error) {
	name := connection
	if name == "" {
		name = "Storage"
	}
	h.storesMu.Lock()
	defer h.storesMu.Unlock()
	if s, ok := h.stores[name]; ok {
		return s, nil
	}
	prefix := ""
	for _, cand := range []string{"AzureWebJobs" + name, name} {
		if h.getenv(cand) != "" || h.getenv(cand+"__accountName") != "" || h.getenv(cand+"__queueServiceUri") != "" || h.getenv(cand+"__blobServiceUri") != "" {
			prefix = cand
			break
		}
	}
	if prefix == "" {
		return nil, fmt.Errorf("connection %q: neither setting AzureWebJobs%s nor %s (or their __accountName / __queueServiceUri / __blobServiceUri forms) is set", connection, name, name)
	}
	getenv := func(k string) string {
		if strings.HasPrefix(k, storage.SettingStorage) {
			return h.getenv(prefix + strings.TrimPrefix(k, storage.SettingStorage))
		}
		return h.getenv(k)
	}
	c, err := storage.FromEnv(getenv, h.opts.Storage)
	if err != nil {
		return nil, fmt.Errorf("connection %q (%s): %w", connection, prefix, err)
	}
	s := c.Store()
	h.stores[name] = s
	return s, nil
}

// handlerEnv is the handler's environment: inherited + app settings (§1.2); the worker
// adds the port and id variables.
func (h *Host) handlerEnv() []string {
	env := os.Environ()
	for k, v := range h.opts.Settings {
		env = append(env, k+"="+v)
	}
	// The handler's watchdog on systems without a parent-death signal (proc.WatchParent).
	return append(env, proc.EnvParentPID+"="+strconv.Itoa(os.Getpid()))
}

// ErrHandlerRestarts is returned by Run when the handler failed too often (§1.3).
//
//lint:ignore ST1005 the Functions host's own message (§1.3); tests compare it
var ErrHandlerRestarts = errors.New("Exceeded http worker restart retry count. Shutting down Functions Host")

// Run starts the handler and every trigger and blocks until ctx is cancelled (then it
// returns nil after draining) or the host must stop (handler restart limit, a fatal
// storage error, the HTTP address in use).
func (h *Host) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	fatal := func(err error) { cancel(err) }

	h.workers = newWorkerManager(h, fatal)
	h.log.Info("Starting local Functions host", "appRoot", h.appRoot, "hostId", h.hostID, "functions", len(h.fns))
	// The handler outlives the triggers: it keeps serving in-flight invocations while the
	// host drains.
	workerCtx, workerCancel := context.WithCancel(context.WithoutCancel(ctx))
	workerDone := make(chan struct{})
	go func() { defer close(workerDone); h.workers.supervise(workerCtx) }()
	defer func() { workerCancel(); <-workerDone }()
	var wg sync.WaitGroup

	// Invocations get their own context, cancelled DrainTimeout after shutdown starts.
	invCtx, invCancel := context.WithCancel(context.WithoutCancel(ctx))
	released := false
	defer func() {
		if !released {
			invCancel()
		}
		// Released invocations keep their context: cancelling it would have the handler
		// record an interrupted attempt for a message another consumer now owns.
	}()
	var inflight sync.WaitGroup
	var httpFns []*Function
	for _, fn := range h.fns {
		if fn.Disabled {
			h.log.Info("Function is disabled", "function", fn.Name)
			continue
		}
		switch strings.ToLower(fn.Trigger.Type) {
		case "queuetrigger":
			wg.Add(1)
			go func() { defer wg.Done(); h.runQueueListener(ctx, invCtx, &inflight, fn, fatal) }()
		case "timertrigger":
			wg.Add(1)
			go func() { defer wg.Done(); h.runTimer(ctx, invCtx, fn) }()
		case "httptrigger":
			httpFns = append(httpFns, fn)
		}
	}
	if len(httpFns) > 0 {
		srv, err := h.startHTTP(ctx, invCtx, httpFns)
		if err != nil {
			cancel(err)
		} else {
			defer srv.Close()
		}
	}
	close(h.started)
	<-ctx.Done()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		h.log.Error("Stopping local Functions host", "error", err)
	} else {
		h.log.Info("Stopping local Functions host")
	}
	done := make(chan struct{})
	go func() { wg.Wait(); inflight.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(h.opts.DrainTimeout):
		if h.opts.ReleaseOnDrainTimeout {
			released = true
			n := h.inflight.releaseAll(ctx)
			h.log.Warn("In-flight invocations did not finish within the drain timeout; released their messages for another consumer", "timeout", h.opts.DrainTimeout, "released", n)
			break
		}
		h.log.Warn("In-flight invocations did not finish within the drain timeout; cancelling them", "timeout", h.opts.DrainTimeout)
		invCancel()
		<-done
	}
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// isGone reports the errors the host ignores when it deletes or updates a message: pop
// receipt mismatch (400), not found (404), queue being deleted or disabled (409).
func isGone(err error) bool {
	return errors.Is(err, store.ErrInvalid) || errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrConflict)
}

// transientStorageError reports server errors (5xx) and transport failures: the driver
// maps both onto store.ErrUnavailable.
func transientStorageError(err error) bool {
	return errors.Is(err, store.ErrUnavailable)
}
