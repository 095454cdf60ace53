package nightshift

import (
	"context"
	"log/slog"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/tracing"

	"github.com/nightshift-jobs/nightshift/envelope"
	"github.com/nightshift-jobs/nightshift/record"
	"github.com/nightshift-jobs/nightshift/storage"
)

// The observer seam of the executor (docs/observability.md): the pipeline tells an
// Observer when a delivery starts, when its worker runs, how the delivery ends, what the
// job-end callback hook did and what RunDeadLetter recorded. Package nightshiftotel turns
// that into OpenTelemetry spans and metrics; the root package imports no telemetry. With
// no Observer nothing is called.

// Observer hears the execution of jobs: HandlerOptions.Observer, Config.Observer. Its
// methods are called concurrently, one delivery per goroutine.
type Observer interface {
	// StartAttempt is called when a job message has been decoded, before admission. The
	// returned context is the rest of the delivery's (the worker runs under it, and the
	// jobs it enqueues carry its trace); the returned AttemptObserver hears the rest.
	StartAttempt(ctx context.Context, a AttemptInfo) (context.Context, AttemptObserver)
	// Callback is called after the job-end callback hook ran for a job (HandlerOptions.OnJobEnd).
	Callback(ctx context.Context, c CallbackInfo)
	// DeadLetter is called when RunDeadLetter handled a poison message: recorded, or found
	// recorded already.
	DeadLetter(ctx context.Context, d DeadLetterInfo)
}

// AttemptObserver hears one delivery of a job, from StartAttempt on.
type AttemptObserver interface {
	// LogAttrs are added to every log line of the delivery (trace_id, span_id).
	LogAttrs() []slog.Attr
	// Running is called when the worker starts (the delivery was admitted).
	Running()
	// End is called once, when the delivery ends.
	End(e AttemptEnd)
}

// AttemptInfo describes a delivery of a job as it starts.
type AttemptInfo struct {
	JobID, Kind string
	// Attempt is the 1-based attempt; Replay the job's life.
	Attempt, Replay int
	// Queue is the queue the message came from; MessageID its queue message id.
	Queue, MessageID string
	// DequeueCount counts the host's deliveries of this message, this one included.
	DequeueCount int
	// InvocationID is the host's invocation id.
	InvocationID string
	// EnqueuedAt is the job's first enqueue; InsertedAt when this message was put on
	// the queue; RunAt when the job asked to run (zero: at once).
	EnqueuedAt, InsertedAt, RunAt time.Time
	// Trace is the trace context of the enqueue (nil: none).
	Trace *envelope.TraceContext
}

// AttemptEnd is how a delivery ended.
type AttemptEnd struct {
	// Outcome is "succeeded", "retrying", "dead", "cancelled", "skipped", "deferred" or
	// "error" (storage failed: the host delivers the message again).
	Outcome string
	// ErrorClass is the failed attempt's class ("retryable", "permanent", "panic",
	// "timeout", "cancelled"), or "infrastructure" for an "error" outcome.
	ErrorClass string
	// Error is the failure's text; DeadReason why a dead job is dead.
	Error      string
	DeadReason record.DeadReason
}

// CallbackInfo is one run of the job-end callback hook.
type CallbackInfo struct {
	JobID, Kind string
	// State is the job's end state (succeeded or dead).
	State record.State
	// Err is the hook's error (nil: the callback job is enqueued or was already).
	Err error
	// Trace is the job's enqueue trace context (nil: none).
	Trace *envelope.TraceContext
}

// CallbackSpanner is an Observer that gives each run of the job-end callback hook a span
// of its own: StartCallback is called before the hook runs (c without Err) and returns
// the context the hook runs under (the callback job it enqueues is then that span's
// child) and the func that ends the span with the hook's error; Callback is called with
// that context. nightshiftotel's Observer is one.
type CallbackSpanner interface {
	StartCallback(ctx context.Context, c CallbackInfo) (context.Context, func(error))
}

// DeadLetterInfo is a poison message RunDeadLetter handled.
type DeadLetterInfo struct {
	DeadID, JobID, Kind string
	// Queue is the job queue (without the poison suffix).
	Queue  string
	Reason record.DeadReason
	Cause  record.DeadCause
	// Recorded is false when the dead letter was recorded already (a redelivery).
	Recorded bool
	// Started is when RunDeadLetter began with the message.
	Started time.Time
	// Trace is the enqueue's trace context (nil for an undecodable message or none).
	Trace *envelope.TraceContext
}

// StorageTracer is an Observer that traces storage calls too: NewApp builds the storage
// clients with its provider (storage.Options.Tracing) when Config.Store is nil, so that
// the queue and blob calls of a delivery are child spans of its attempt's span.
// nightshiftotel's Observer is one.
type StorageTracer interface {
	// StorageTracing is the Azure SDK tracing provider of the storage clients.
	StorageTracing() tracing.Provider
}

// storageOptions are the storage options of an app observed by obs (nil: the defaults).
func storageOptions(obs Observer) *storage.Options {
	if st, ok := obs.(StorageTracer); ok {
		return &storage.Options{Tracing: st.StorageTracing()}
	}
	return nil
}

// noAttempt is the AttemptObserver of an executor without an Observer.
type noAttempt struct{}

func (noAttempt) LogAttrs() []slog.Attr { return nil }
func (noAttempt) Running()              {}
func (noAttempt) End(AttemptEnd)        {}

// observe starts observing a decoded delivery.
func (x *executor) observe(ctx context.Context, d delivery, env *envelope.Envelope) (context.Context, AttemptObserver) {
	if x.obs == nil {
		return ctx, noAttempt{}
	}
	return x.obs.StartAttempt(ctx, AttemptInfo{
		JobID: env.JobID, Kind: env.Kind, Attempt: env.Attempt, Replay: env.Replay, Queue: d.Queue,
		MessageID: d.Meta.ID, DequeueCount: d.Meta.DequeueCount, InvocationID: d.InvocationID,
		EnqueuedAt: env.EnqueuedAt, InsertedAt: d.Meta.InsertionTime, RunAt: env.RunAt, Trace: env.Trace,
	})
}

// attemptEnd is the AttemptEnd of a delivery's outcome.
func attemptEnd(out outcome) AttemptEnd {
	e := AttemptEnd{Outcome: out.Outcome, ErrorClass: out.class, Error: out.errText, DeadReason: out.reason}
	if out.Err != nil {
		e.ErrorClass, e.Error = "infrastructure", out.Err.Error()
	}
	return e
}

// observeCallbacks wraps the job-end callback hook so that obs hears each call.
func observeCallbacks(obs Observer, onJobEnd func(ctx context.Context, env *envelope.Envelope, st *record.Status) error) func(ctx context.Context, env *envelope.Envelope, st *record.Status) error {
	if obs == nil || onJobEnd == nil {
		return onJobEnd
	}
	spanner, _ := obs.(CallbackSpanner)
	return func(ctx context.Context, env *envelope.Envelope, st *record.Status) error {
		ci := CallbackInfo{JobID: env.JobID, Kind: env.Kind, Trace: env.Trace}
		if st != nil {
			ci.State = st.State
		}
		end := func(error) {}
		if spanner != nil {
			ctx, end = spanner.StartCallback(ctx, ci)
		}
		err := onJobEnd(ctx, env, st)
		ci.Err = err
		obs.Callback(ctx, ci)
		end(err)
		return err
	}
}

// observeDead tells the observer about a poison message RunDeadLetter handled.
func (x *executor) observeDead(ctx context.Context, dl *record.DeadLetter, env *envelope.Envelope, wrote bool, started time.Time) {
	if x.obs == nil {
		return
	}
	di := DeadLetterInfo{DeadID: dl.DeadID, JobID: dl.JobID, Kind: dl.Kind, Queue: dl.Queue, Reason: dl.Reason,
		Cause: dl.Cause, Recorded: wrote, Started: started}
	if env != nil {
		di.Trace = env.Trace
	}
	x.obs.DeadLetter(ctx, di)
}

// tracerOf is obs as a Tracer, when it is one.
func tracerOf(obs Observer) Tracer {
	t, _ := obs.(Tracer)
	return t
}
