package nightshifttest

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/envelope"
	"github.com/nightshift-jobs/nightshift/internal/jobrun"
)

// WorkOptions describe the job an attempt belongs to. Zero fields take the values of a
// job's first delivery: a new job id, attempt 1, the kind's MaxAttempts and Timeout,
// replay 0, dequeue count 1, enqueued now.
type WorkOptions struct {
	// Worker are the options Work registers the worker with, as AddWorker takes them
	// (Timeout, MaxAttempts, Backoff); nil for the defaults. Run uses the options the
	// kind was registered with instead.
	Worker *nightshift.WorkerOptions
	// JobID is the job's id (default: a new one).
	JobID string
	// Attempt is the 1-based attempt number (default 1). On the last attempt a failure
	// makes the job dead instead of retrying.
	Attempt int
	// MaxAttempts overrides the kind's, as an envelope's max_attempts does.
	MaxAttempts int
	// Timeout overrides the kind's per-attempt timeout, as an envelope's timeout_seconds
	// does: the job's context is cancelled when it passes, and the attempt's class is
	// "timeout".
	Timeout time.Duration
	// Replay is the job's life (replays from its dead letter; default 0).
	Replay int
	// DequeueCount is the queue message's delivery count (default 1).
	DequeueCount int
	// Meta is the envelope's metadata.
	Meta map[string]string
	// EnqueuedAt is when the job was first enqueued (default now).
	EnqueuedAt time.Time
	// BatchID and ParentID tie the job to a batch and its parent job.
	BatchID, ParentID string
	// Logger also receives the job's log records (already redacted), for example a
	// slog.Logger writing to t.Output(); nil discards them. Result.Logs has them either way.
	Logger *slog.Logger
	// Client is what JobClient returns inside the job, and what StartBatch and
	// BatchChildren use; nil for none.
	Client *nightshift.Client
}

// Progress is one report of Job.Progress, clamped and truncated as the status records it.
type Progress struct {
	Fraction float64
	Message  string
}

// Result is what one attempt gave and how the handler would record it.
type Result struct {
	// Value is what the worker returned.
	Value any
	// JSON is the result as the job's status stores it, when it is encoded as JSON (any
	// value but Bytes and []byte); nil otherwise.
	JSON []byte
	// Bytes and ContentType are a Bytes or []byte result as stored.
	Bytes       []byte
	ContentType string
	// Err is the attempt's error: the worker's, a *nightshift.PanicError for a panic, or
	// the permanent error of args that do not decode or a result that does not encode.
	// nil when the attempt succeeded.
	Err error
	// Class is the attempt's error class as the status records it: "" on success, then
	// "retryable", "permanent", "panic", "timeout", or "cancelled" when ctx ended.
	Class string
	// LastError is the error text the status records (Status.LastError).
	LastError string
	// Outcome is what the handler would do next: "succeeded", "retrying", "snoozed" (the
	// worker returned nightshift.Snooze; Err is that error) or "dead".
	Outcome string
	// RetryIn is the backoff delay before the next attempt when Outcome is "retrying",
	// the snooze's delay when it is "snoozed".
	RetryIn time.Duration
	// DeadReason says why the job is dead ("permanent_error", "attempts_exhausted").
	DeadReason string
	// Logs are the job's captured log lines, "LEVEL message key=value ...", redacted.
	Logs []string
	// Progress are the job's progress reports, in order, every one of them (the handler
	// throttles its writes; see nightshift.ProgressInterval).
	Progress []Progress
	// Duration is how long the attempt ran.
	Duration time.Duration
}

// Work runs one attempt of w on args as the handler runs a delivered job of args' kind
// (see the package doc). The error is for a test that cannot run — args that do not
// encode as JSON, an invalid kind or worker options — never the job's failure, which is
// Result.Err.
func Work[T nightshift.JobArgs](ctx context.Context, w nightshift.Worker[T], args T, opts *WorkOptions) (*Result, error) {
	if opts == nil {
		opts = &WorkOptions{}
	}
	reg := nightshift.NewRegistry()
	if err := nightshift.AddWorkerSafely(reg, w, opts.Worker); err != nil {
		return nil, fmt.Errorf("nightshifttest: %w", err)
	}
	raw, err := json.Marshal(args)
	if err != nil {
		return nil, fmt.Errorf("nightshifttest: args %T do not encode as JSON: %w", args, err)
	}
	return Run(ctx, reg, args.Kind(), raw, opts)
}

// Run runs one attempt of the worker registered on reg for kind, with args as the JSON
// of an envelope's args, under the kind's registered options (WorkOptions.Worker is not
// used). The error is for a test that cannot run: no worker for the kind, or args that
// the handler would refuse before running anything (not JSON, a key given twice, nesting
// deeper than envelope.MaxDepth).
func Run(ctx context.Context, reg *nightshift.Registry, kind string, args json.RawMessage, opts *WorkOptions) (*Result, error) {
	if opts == nil {
		opts = &WorkOptions{}
	}
	if len(args) > 0 {
		// The handler checks the envelope's text so, and poisons a message that fails.
		if err := envelope.CheckJSON(args); err != nil {
			return nil, fmt.Errorf("nightshifttest: args of %s: the handler would refuse them: %w", kind, err)
		}
	}
	req := &jobrun.Request{
		Registry: reg, Kind: kind, Args: args, JobID: opts.JobID, Attempt: max(opts.Attempt, 1),
		MaxAttempts: opts.MaxAttempts, Replay: opts.Replay, DequeueCount: max(opts.DequeueCount, 1),
		Meta: opts.Meta, EnqueuedAt: opts.EnqueuedAt, BatchID: opts.BatchID, ParentID: opts.ParentID,
		Timeout: opts.Timeout, Logger: opts.Logger,
	}
	if opts.Client != nil {
		req.Client = opts.Client
	}
	if req.JobID == "" {
		req.JobID = envelope.NewJobID()
	}
	if req.EnqueuedAt.IsZero() {
		req.EnqueuedAt = time.Now().UTC()
	}
	r, err := jobrun.Run(ctx, req)
	if err != nil {
		return nil, err
	}
	out := &Result{
		Value: r.Value, ContentType: r.ContentType, Err: r.Err, Class: r.Class, LastError: r.LastError,
		Outcome: r.Outcome, RetryIn: r.RetryIn, DeadReason: r.DeadReason, Logs: r.Logs,
		Duration: r.Finished.Sub(r.Started),
	}
	if r.IsJSON {
		out.JSON = r.Data
	} else {
		out.Bytes = r.Data
	}
	for _, p := range r.Progress {
		out.Progress = append(out.Progress, Progress(p))
	}
	return out, nil
}
