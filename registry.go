package nightshift

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"reflect"
	"sort"
	"sync"
	"time"

	"github.com/nightshift-jobs/nightshift/envelope"
)

// Registry maps job kinds to their workers and options. Create one with NewRegistry, add
// workers with AddWorker or AddWorkerFunc at start-up, then hand it to Serve or NewHandler.
type Registry struct {
	mu    sync.RWMutex
	kinds map[string]*kindEntry
}

// kindEntry is a registered kind with its type erased.
type kindEntry struct {
	kind string
	opts WorkerOptions
	// run decodes the args into the kind's type and calls the worker.
	run func(ctx context.Context, base jobBase, args json.RawMessage) (any, error)
	// sensitive are the JSON paths of the args' sensitive fields (sensitive.go).
	sensitive [][]string
}

// jobBase carries the type-independent fields of a Job.
type jobBase struct {
	ID, Kind             string
	Attempt, MaxAttempts int
	Replay, DequeueCount int
	Snoozes              int
	Meta                 map[string]string
	EnqueuedAt           time.Time
	Logger               *slog.Logger
	BatchID, ParentID    string
	progress             *progressReporter
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{kinds: map[string]*kindEntry{}}
}

// AddWorker registers w for the kind named by T's Kind method. opts may be nil. It panics
// when the kind name is invalid or already registered: both are programming errors that
// must surface at start-up. Use AddWorkerSafely to get an error instead.
func AddWorker[T JobArgs](r *Registry, w Worker[T], opts *WorkerOptions) {
	if err := AddWorkerSafely(r, w, opts); err != nil {
		panic(err)
	}
}

// AddWorkerFunc registers a function as the worker for T's kind (see AddWorker).
func AddWorkerFunc[T JobArgs](r *Registry, fn func(ctx context.Context, job *Job[T]) (any, error), opts *WorkerOptions) {
	AddWorker[T](r, WorkFunc[T](fn), opts)
}

// AddWorkerSafely is AddWorker returning an error instead of panicking.
func AddWorkerSafely[T JobArgs](r *Registry, w Worker[T], opts *WorkerOptions) error {
	var zero T
	kind := zero.Kind()
	if p := envelope.ValidKind(kind); p != "" {
		return fmt.Errorf("nightshift: kind of %T: %s", zero, p)
	}
	o := WorkerOptions{}
	if opts != nil {
		o = *opts
	}
	if o.MaxAttempts > envelope.MaxAttemptsLimit {
		return fmt.Errorf("nightshift: kind %q: MaxAttempts %d is more than %d (envelope.MaxAttemptsLimit)", kind, o.MaxAttempts, envelope.MaxAttemptsLimit)
	}
	if o.Timeout > envelope.MaxTimeout {
		return fmt.Errorf("nightshift: kind %q: Timeout %s is more than %s (7 days, envelope.MaxTimeout)", kind, o.Timeout, envelope.MaxTimeout)
	}
	if o.MaxSnoozes > envelope.MaxSnoozes {
		return fmt.Errorf("nightshift: kind %q: MaxSnoozes %d is more than %d (envelope.MaxSnoozes)", kind, o.MaxSnoozes, envelope.MaxSnoozes)
	}
	if err := o.Limits.check(); err != nil {
		return fmt.Errorf("nightshift: kind %q: Limits: %w", kind, err)
	}
	e := &kindEntry{kind: kind, opts: o.withDefaults(), sensitive: pathsOf(reflect.TypeFor[T]())}
	e.run = func(ctx context.Context, b jobBase, raw json.RawMessage) (any, error) {
		var args T
		if len(raw) > 0 && string(raw) != "null" {
			if err := json.Unmarshal(raw, &args); err != nil {
				return nil, Permanent(fmt.Errorf("args do not decode into %T: %w", args, err))
			}
		}
		job := &Job[T]{
			ID: b.ID, Kind: b.Kind, Args: args, Attempt: b.Attempt, MaxAttempts: b.MaxAttempts,
			EnqueuedAt: b.EnqueuedAt, Replay: b.Replay, DequeueCount: b.DequeueCount, Meta: b.Meta, Logger: b.Logger,
			BatchID: b.BatchID, ParentID: b.ParentID, Snoozes: b.Snoozes, progress: b.progress,
		}
		return w.Work(ctx, job)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.kinds[kind]; dup {
		return fmt.Errorf("nightshift: kind %q is already registered", kind)
	}
	r.kinds[kind] = e
	return nil
}

// Kinds lists the registered kinds in name order.
func (r *Registry) Kinds() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]string, 0, len(r.kinds))
	for k := range r.kinds {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// limits are the attempt bounds of a job of this kind: the kind's MaxAttempts and Timeout,
// overridden by the envelope's max_attempts and timeout_seconds.
func (e *kindEntry) limits(env *envelope.Envelope) (maxAttempts int, timeout time.Duration) {
	maxAttempts, timeout = e.opts.MaxAttempts, e.opts.Timeout
	if env.MaxAttempts > 0 {
		maxAttempts = env.MaxAttempts
	}
	if env.TimeoutSeconds > 0 {
		timeout = time.Duration(env.TimeoutSeconds * float64(time.Second))
	}
	return maxAttempts, timeout
}

func (r *Registry) lookup(kind string) *kindEntry {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.kinds[kind]
}
