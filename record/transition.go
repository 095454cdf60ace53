package record

import (
	"encoding/json"
	"slices"
	"time"

	"github.com/nightshift-jobs/nightshift/envelope"
)

// A Transition is one change of a job's status record, the only way nightshift writes one.
// It holds the facts its writer knows (Proposed) and the rule for the rest: which fields it
// keeps from the current record, and whether it applies at all. A state change applies
// only when it moves the job forward (Status.Supersedes: a status never goes backwards);
// an annotation (BatchSummarised, CallbackRecorded) leaves the state alone and applies
// when there is a record to annotate.
//
// The transitions, in a job's life:
//
//	Queued        enqueue (client, durable schedule, batch finalizer); create-only
//	Running       the attempt started or reported progress
//	Claimed       a batch finalizer's delivery claims its attempt
//	Ended         the attempt ended: succeeded, retrying or dead
//	Snoozed       the attempt snoozed: queued again at the same attempt, one snooze more
//	DeadLettered  the dead-letter handler recorded the job's poison message
//	Cancelled     the client cancelled the job
//	Replayed      queued again for a new life from its dead letter
type Transition struct {
	facts Status
	// lines and dropped are log lines the transition appends (Ended).
	lines   []LogLine
	dropped int
	// applies says whether next (facts plus what is kept) may be written over cur; nil
	// means next.Supersedes(cur).
	applies func(next, cur *Status) bool
	// keep copies into next what the transition keeps from cur (not nil).
	keep func(next, cur *Status)
}

// Proposed returns the facts the transition writes, without anything kept from the current
// record: what a job-end callback receives. Each call returns a new copy.
func (t *Transition) Proposed() *Status {
	s := t.facts
	return &s
}

// MaxShownArgs bounds the args a status record shows (Status.Args).
const MaxShownArgs = 4 << 10

// WithArgs makes the transition record args, the job's args as they may be shown (the
// caller redacts them), and returns t. Without it a transition keeps the current record's
// args. Args longer than MaxShownArgs are not recorded.
func (t *Transition) WithArgs(args json.RawMessage) *Transition {
	if len(args) <= MaxShownArgs {
		t.facts.Args = args
	}
	return t
}

// Apply returns the status to write over cur (nil when the job has none), or nil when the
// transition does not apply. Each call returns a new record; cur is not changed. Apply has
// the shape Clients.UpdateStatus takes.
func (t *Transition) Apply(cur *Status) *Status {
	next := t.facts
	if cur != nil && t.keep != nil {
		t.keep(&next, cur)
	}
	if next.Args == nil && cur != nil {
		next.Args = cur.Args
	}
	applies := (*Status).Supersedes
	if t.applies != nil {
		applies = t.applies
	}
	if !applies(&next, cur) {
		return nil
	}
	if len(t.lines) > 0 || t.dropped > 0 {
		next.Logs = slices.Clone(next.Logs)
		next.AppendLogs(t.lines...)
		next.LogsDropped += t.dropped
	}
	return &next
}

// Queued is the status of a job just put on queue (or in the durable schedule) with env:
// state queued, replay and batch from env, next run at runAt (zero when due now). It is
// written create-only (PutStatus with etag ""), so it applies only where there is no
// record: a job that already ran, or an id taken meanwhile, keeps its own.
func Queued(env *envelope.Envelope, queue string, runAt time.Time) *Transition {
	return &Transition{
		facts: Status{
			JobID: env.JobID, Kind: env.Kind, State: StateQueued, Replay: env.Replay, MaxAttempts: env.MaxAttempts,
			Queue: queue, EnqueuedAt: env.EnqueuedAt, NextRunAt: runAt, Meta: env.Meta, BatchID: env.BatchID,
		},
		applies: func(_, cur *Status) bool { return cur == nil },
	}
}

// Replayed is the status of a job queued again from its dead letter for the new life
// env.Replay. It applies when it supersedes the current record (the dead status of the
// life before) and keeps nothing from it: logs, errors, result, progress and the dead
// letter belong to the old life. As before this module existed, the queued record of a
// new life names no batch; the running status names it again.
func Replayed(env *envelope.Envelope, queue string) *Transition {
	return &Transition{
		facts: Status{
			JobID: env.JobID, Kind: env.Kind, State: StateQueued, Replay: env.Replay, MaxAttempts: env.MaxAttempts,
			Queue: queue, EnqueuedAt: env.EnqueuedAt, Meta: env.Meta,
		},
	}
}

// Run holds the facts of a running attempt that are not in its envelope.
type Run struct {
	// MaxAttempts is the job's effective attempt limit.
	MaxAttempts int
	// Queue is the queue the message arrived on.
	Queue string
	// StartedAt is when the attempt started.
	StartedAt time.Time
	// Progress is the progress just reported (nil when the write reports none).
	Progress *Progress
	// DequeueCount, when 2 or more, is the host's dequeue count of the redelivery whose
	// start this write records: it is counted in Status.Runs once. Leave it 0 for other
	// writes (a first delivery, progress).
	DequeueCount int
}

func runningFacts(env *envelope.Envelope, r Run) Status {
	return Status{
		JobID: env.JobID, Kind: env.Kind, State: StateRunning, Replay: env.Replay,
		Attempt: env.Attempt, MaxAttempts: r.MaxAttempts, Queue: r.Queue, EnqueuedAt: env.EnqueuedAt,
		StartedAt: r.StartedAt, Errors: env.Errors, Meta: env.Meta, Progress: r.Progress, BatchID: env.BatchID,
		Snoozes: env.Snoozes,
	}
}

// countRun sets next's run count from cur's (same attempt of the same life) and the
// redelivery next records, if any (next.RunDequeueCount, counted once).
func countRun(next, cur *Status) {
	if !sameAttempt(next, cur) {
		return
	}
	switch {
	case next.RunDequeueCount > cur.RunDequeueCount:
		next.Runs = cur.Runs + 1
	default:
		next.Runs, next.RunDequeueCount = cur.Runs, cur.RunDequeueCount
	}
}

// Running is the status of the attempt env.Attempt while it runs: written when it starts
// (after a short delay) and on each progress report. It applies when it supersedes the
// current record (a running record of the same attempt is rewritten in place) and keeps
// the current logs and batch summary, and the current progress when r reports none and
// the record is of the same attempt of the same life. A write with r.DequeueCount of 2 or
// more counts that redelivery in Runs (once per dequeue count); every write keeps the
// count of the same attempt.
func Running(env *envelope.Envelope, r Run) *Transition {
	f := runningFacts(env, r)
	if r.DequeueCount > 1 {
		f.Runs, f.RunDequeueCount = 1, r.DequeueCount
	}
	return &Transition{facts: f, keep: keepRunning}
}

func keepRunning(next, cur *Status) {
	countRun(next, cur)
	next.Logs, next.LogsDropped, next.Batch = cur.Logs, cur.LogsDropped, cur.Batch
	if next.Progress == nil && sameAttempt(next, cur) {
		next.Progress = cur.Progress
	}
}

// Claimed is the running status with which a batch finalizer's delivery claims the attempt
// env.Attempt at now (its UpdatedAt is now, which the claim's staleness check reads). It
// applies when it supersedes the current record and keeps only its logs.
func Claimed(env *envelope.Envelope, r Run, now time.Time) *Transition {
	r.StartedAt = now
	f := runningFacts(env, r)
	f.UpdatedAt = now
	return &Transition{facts: f, keep: func(next, cur *Status) {
		next.Logs, next.LogsDropped = cur.Logs, cur.LogsDropped
	}}
}

// End holds the facts of an attempt's end that are not in its envelope.
type End struct {
	// State is StateSucceeded, StateRetrying or StateDead.
	State State
	// MaxAttempts is the job's effective attempt limit.
	MaxAttempts int
	// Queue is the queue the message arrived on.
	Queue string
	// StartedAt and FinishedAt bound the attempt.
	StartedAt, FinishedAt time.Time
	// Progress is the attempt's last progress (nil when it reported none).
	Progress *Progress
	// Result is a succeeded job's result.
	Result *Result
	// Errors is the job's attempt history, this attempt's error included when it failed.
	// Take it before encoding the envelope, which may shrink env.Errors.
	Errors []envelope.AttemptError
	// LastError is a failed attempt's error.
	LastError string
	// NextRunAt is when a retrying job's next attempt is due.
	NextRunAt time.Time
	// DeadLetter is a dead job's dead-letter blob.
	DeadLetter string
	// Lines and Dropped are the attempt's captured log lines and how many did not fit.
	Lines   []LogLine
	Dropped int
}

// Ended is the status at the end of the attempt env.Attempt: succeeded, retrying or dead,
// with e's error history. It applies when it supersedes the current record; it
// appends the attempt's lines to the current logs and keeps the current batch summary
// (when e names none), the current start time (when e has none, or the record is this
// attempt running), the current progress (when e reports none and the record is of the
// same attempt of the same life) and the run count of the same attempt (Status.Runs).
func Ended(env *envelope.Envelope, e End) *Transition {
	return &Transition{
		facts: Status{
			JobID: env.JobID, Kind: env.Kind, State: e.State, Replay: env.Replay, Attempt: env.Attempt,
			MaxAttempts: e.MaxAttempts, Queue: e.Queue, EnqueuedAt: env.EnqueuedAt, StartedAt: e.StartedAt,
			FinishedAt: e.FinishedAt, DurationMS: e.FinishedAt.Sub(e.StartedAt).Milliseconds(), Meta: env.Meta,
			BatchID: env.BatchID, Progress: e.Progress, Result: e.Result, Errors: e.Errors, LastError: e.LastError,
			NextRunAt: e.NextRunAt, DeadLetter: e.DeadLetter, Snoozes: env.Snoozes,
		},
		lines: e.Lines, dropped: e.Dropped,
		keep: keepEnded,
	}
}

func keepEnded(next, cur *Status) {
	countRun(next, cur)
	next.Logs, next.LogsDropped = slices.Clone(cur.Logs), cur.LogsDropped
	if next.StartedAt.IsZero() || (cur.State == StateRunning && cur.Attempt == next.Attempt) {
		next.StartedAt = cur.StartedAt
	}
	if next.Batch == nil {
		next.Batch = cur.Batch
	}
	if next.Progress == nil && sameAttempt(next, cur) {
		next.Progress = cur.Progress
	}
}

// DeadLettered is the dead status the dead-letter handler writes for dl, the record of
// the job env whose message reached the poison queue, at now. The attempt is env's (at
// least 1), the last error the newest of env.Errors. It applies when it supersedes the
// current record and keeps its logs, start time, attempt limit, batch summary and
// progress, and the run count of the same attempt (Status.Runs).
func DeadLettered(env *envelope.Envelope, dl *DeadLetter, now time.Time) *Transition {
	f := Status{
		JobID: dl.JobID, Kind: dl.Kind, State: StateDead, Replay: env.Replay, Attempt: max(env.Attempt, 1),
		Queue: dl.Queue, EnqueuedAt: env.EnqueuedAt, FinishedAt: now, Errors: env.Errors,
		DeadLetter: DeadLetterBlob(dl.DeadID), Meta: env.Meta, BatchID: env.BatchID, Snoozes: env.Snoozes,
	}
	if n := len(env.Errors); n > 0 {
		f.LastError = env.Errors[n-1].Error
	}
	return &Transition{facts: f, keep: func(next, cur *Status) {
		next.Logs, next.LogsDropped, next.StartedAt, next.MaxAttempts = cur.Logs, cur.LogsDropped, cur.StartedAt, cur.MaxAttempts
		next.Batch, next.Progress = cur.Batch, cur.Progress
		countRun(next, cur)
	}}
}

// Cancelled is the status of job jobID cancelled by its client at now. It names the
// attempt that is running (the current one) or runs next (one more; attempt 1 for a job
// with no record, whose cancellation stops a later enqueue with its id). It applies when it
// supersedes the current record, which is whenever the job has not ended (cancelled
// included): a terminal state of the same life at the same or a later attempt. It keeps the current kind, replay, attempt limit,
// queue, enqueue and start times, errors, logs and metadata; it drops progress, result,
// batch, next run time and callback.
func Cancelled(jobID string, now time.Time) *Transition {
	return &Transition{
		facts: Status{JobID: jobID, State: StateCancelled, Attempt: 1, FinishedAt: now},
		keep: func(next, cur *Status) {
			next.Kind, next.Replay, next.MaxAttempts, next.Queue = cur.Kind, cur.Replay, cur.MaxAttempts, cur.Queue
			next.Attempt = cur.Attempt
			if cur.State != StateRunning {
				next.Attempt++
			}
			next.Attempt = max(next.Attempt, 1)
			next.EnqueuedAt, next.StartedAt, next.Errors, next.LastError = cur.EnqueuedAt, cur.StartedAt, cur.Errors, cur.LastError
			next.Logs, next.LogsDropped, next.Meta, next.Snoozes = cur.Logs, cur.LogsDropped, cur.Meta, cur.Snoozes
		},
	}
}

// Snooze holds the facts of a snoozed attempt that are not in its envelope.
type Snooze struct {
	// MaxAttempts is the job's effective attempt limit.
	MaxAttempts int
	// Queue is the queue the message arrived on and goes back to.
	Queue string
	// StartedAt and FinishedAt bound the attempt that snoozed.
	StartedAt, FinishedAt time.Time
	// Due is when the job runs again.
	Due time.Time
	// Lines and Dropped are the attempt's captured log lines and how many did not fit.
	Lines   []LogLine
	Dropped int
}

// Snoozed is the status of a job whose attempt env.Attempt snoozed: env is the envelope
// enqueued again (the same attempt, env.Snoozes counting this snooze). The state is
// queued, due at s.Due (NextRunAt), with Snoozes from env. Between attempts it applies
// when it supersedes the current record; at the same attempt of the same life it applies
// over a record that has not ended and is not retrying when it counts more snoozes than
// that record (so a redelivered earlier snooze never moves the count back). It appends the
// attempt's lines to the current logs and keeps the current batch summary and run count.
func Snoozed(env *envelope.Envelope, s Snooze) *Transition {
	return &Transition{
		facts: Status{
			JobID: env.JobID, Kind: env.Kind, State: StateQueued, Replay: env.Replay, Attempt: env.Attempt,
			MaxAttempts: s.MaxAttempts, Queue: s.Queue, EnqueuedAt: env.EnqueuedAt, StartedAt: s.StartedAt,
			FinishedAt: s.FinishedAt, DurationMS: s.FinishedAt.Sub(s.StartedAt).Milliseconds(), Meta: env.Meta,
			BatchID: env.BatchID, Errors: env.Errors, NextRunAt: s.Due, Snoozes: env.Snoozes,
		},
		lines: s.Lines, dropped: s.Dropped,
		applies: snoozeApplies,
		keep: func(next, cur *Status) {
			countRun(next, cur)
			next.Logs, next.LogsDropped, next.Batch = slices.Clone(cur.Logs), cur.LogsDropped, cur.Batch
		},
	}
}

func snoozeApplies(next, cur *Status) bool {
	if cur == nil {
		return true
	}
	if !sameAttempt(next, cur) {
		return next.Supersedes(cur)
	}
	return !cur.State.Terminal() && cur.State != StateRetrying && cur.Snoozes < next.Snoozes
}

// BatchSummarised records sum, the state of the batch the job started, in the job's
// record without changing anything else. It applies when there is a record, unless the
// record already holds the final summary of that batch.
func BatchSummarised(sum *BatchSummary) *Transition {
	return &Transition{
		applies: func(_, cur *Status) bool {
			return cur != nil && (cur.Batch == nil || cur.Batch.BatchID != sum.BatchID || !cur.Batch.State.Terminal())
		},
		keep: func(next, cur *Status) {
			*next = *cur
			next.Batch = sum
		},
	}
}

// CallbackRecorded records out, the delivery of the job-end callback of life replay, in
// the job's record without changing anything else. It applies when the record is of that
// life, unless it already records a successful delivery of the same event (a duplicate
// delivery does not overwrite the first success).
func CallbackRecorded(replay int, out *CallbackOutcome) *Transition {
	return &Transition{
		applies: func(_, cur *Status) bool {
			if cur == nil || cur.Replay != replay {
				return false
			}
			c := cur.Callback
			return c == nil || !c.Delivered || c.Event != out.Event
		},
		keep: func(next, cur *Status) {
			*next = *cur
			next.Callback = out
		},
	}
}

// sameAttempt reports whether a and b are of the same attempt of the same life.
func sameAttempt(a, b *Status) bool {
	return a.Attempt == b.Attempt && a.Replay == b.Replay
}
