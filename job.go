package nightshift

import (
	"context"
	"log/slog"
	"time"
)

// JobArgs is implemented by every job's argument type. Kind names the job kind; it is the
// "kind" of the envelope, so it must be stable once jobs are in flight.
type JobArgs interface {
	Kind() string
}

// Job is one attempt of a job, as the worker sees it.
type Job[T JobArgs] struct {
	// ID is the job id (stable across attempts and replays).
	ID string
	// Kind is the job kind.
	Kind string
	// Args are the decoded arguments.
	Args T
	// Attempt is the 1-based attempt number.
	Attempt int
	// MaxAttempts is the number of attempts after which a failing job is dead.
	MaxAttempts int
	// EnqueuedAt is when the job was first enqueued.
	EnqueuedAt time.Time
	// Replay counts replays from the dead-letter record (0 for the original life).
	Replay int
	// DequeueCount is the host's delivery count of this queue message (1 on first
	// delivery; more after a handler crash or timeout).
	DequeueCount int
	// Meta is the envelope's free-form metadata.
	Meta map[string]string
	// Logger writes to the handler's structured log with the job's attributes, and its
	// lines are kept (bounded) in the job's status record and the invocation's Logs.
	Logger *slog.Logger
	// BatchID is the batch this job is a child or the finalizer of ("" for none); a
	// finalizer reads its children with BatchChildren.
	BatchID string
	// ParentID is the job that started this job's batch, if a job did.
	ParentID string
	// Snoozes counts how often the job snoozed (Snooze) in this life before this run.
	Snoozes int

	progress *progressReporter
}

// Progress reports how far the job has come: fraction between 0 and 1 (clamped) and a
// message such as "40 of 100 files". It shows in the job's status (Status.Progress) and in
// `nightshift wait`. Writes are throttled to one status write per ProgressInterval per
// job; the last value reported is always recorded with the job's end. Storage errors are
// logged, never returned: progress is advisory.
func (j *Job[T]) Progress(ctx context.Context, fraction float64, message string) {
	j.progress.report(ctx, fraction, message)
}

// Worker runs jobs of one kind. Work returns the job's result (nil for none; see Bytes
// and docs/semantics.md for how results are stored) or an error. Errors are retried with
// backoff unless wrapped with Permanent; a panic is recovered and counts as a failed
// attempt, with its stack in the status.
type Worker[T JobArgs] interface {
	Work(ctx context.Context, job *Job[T]) (any, error)
}

// WorkFunc adapts a function to the Worker interface.
type WorkFunc[T JobArgs] func(ctx context.Context, job *Job[T]) (any, error)

// Work calls f.
func (f WorkFunc[T]) Work(ctx context.Context, job *Job[T]) (any, error) { return f(ctx, job) }

// Bytes is a result stored as raw bytes with a content type, instead of as JSON.
// Returning a plain []byte means Bytes{ContentType: "application/octet-stream"}.
type Bytes struct {
	ContentType string
	Data        []byte
}

// WorkerOptions are per-kind settings. Zero fields take the defaults.
type WorkerOptions struct {
	// Timeout bounds one attempt; the job's context is cancelled when it passes.
	// Default DefaultTimeout. It must stay below host.json's functionTimeout.
	Timeout time.Duration
	// MaxAttempts is the number of attempts before a failing job is dead. Default
	// DefaultMaxAttempts. An envelope's max_attempts overrides it.
	MaxAttempts int
	// Backoff computes the delay before the next attempt. Default DefaultBackoff.
	Backoff BackoffPolicy
	// Limits are the kind's flow-control limits across the fleet (limits.go).
	Limits Limits
	// MaxSnoozes is how often a job of the kind may snooze (Snooze) in one life before a
	// further snooze fails it permanently. Default DefaultMaxSnoozes; at most
	// envelope.MaxSnoozes.
	MaxSnoozes int
}

// Defaults for WorkerOptions.
const (
	DefaultTimeout     = 5 * time.Minute
	DefaultMaxAttempts = 10
)

func (o WorkerOptions) withDefaults() WorkerOptions {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = DefaultMaxAttempts
	}
	if o.Backoff == nil {
		o.Backoff = DefaultBackoff()
	}
	if o.MaxSnoozes <= 0 {
		o.MaxSnoozes = DefaultMaxSnoozes
	}
	return o
}
