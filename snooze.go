package nightshift

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nightshift-jobs/nightshift/envelope"
	"github.com/nightshift-jobs/nightshift/record"
)

// DefaultMaxSnoozes is how often a job may snooze in one life when its kind's
// WorkerOptions.MaxSnoozes is 0.
const DefaultMaxSnoozes = 25

// SnoozeError is the error Snooze returns: the job runs again after Delay, at the same
// attempt (docs/flow-control.md#snooze).
type SnoozeError struct {
	// Delay is how long the job waits before it runs again (0: as soon as possible).
	Delay time.Duration
}

func (e *SnoozeError) Error() string { return "snoozed for " + e.Delay.String() }

// Snooze returns an error that a worker returns to run the job again after d without
// consuming an attempt: the job goes back on its queue with the same attempt number and
// one more snooze, invisible for d, and its status says queued, with the snooze count and
// when it is due (Status.Snoozes, Status.NextRunAt). A negative d is 0. The snoozes of a
// job are bounded by its kind's WorkerOptions.MaxSnoozes (DefaultMaxSnoozes); a snooze
// past the bound, or one longer than envelope.MaxScheduleAhead, fails the job permanently
// with an error saying so. Snooze may be wrapped (fmt.Errorf with %w).
func Snooze(d time.Duration) error {
	return &SnoozeError{Delay: max(d, 0)}
}

// IsSnooze reports whether err is or wraps a SnoozeError.
func IsSnooze(err error) bool {
	var se *SnoozeError
	return errors.As(err, &se)
}

// snoozed handles an attempt whose worker returned Snooze: it enqueues the job again at
// the same attempt with one more snooze, then writes the queued status (record.Snoozed).
// done is false when the error is not a snooze, or a snooze the job may not take (past
// its kind's MaxSnoozes, or too long): then r.err is a permanent error saying why, and the
// record stage fails the attempt as usual. The message goes on the queue before the status
// is written, like a retry: a crash in between runs the redelivered original again (at
// least once); a delivery of an earlier snooze after the status is written is skipped
// (staleDelivery), so the count never goes back.
func (x *executor) snoozed(ctx context.Context, a *attempt, r *ran) (out outcome, done bool) {
	var se *SnoozeError
	if !errors.As(r.err, &se) {
		return outcome{}, false
	}
	env := a.env
	limit := a.entry.opts.MaxSnoozes
	switch {
	case env.Snoozes >= limit:
		r.err = Permanentf("job snoozed more often than its kind allows: %d snoozes done, WorkerOptions.MaxSnoozes is %d (last: %v)", env.Snoozes, limit, se)
		return outcome{}, false
	case se.Delay > envelope.MaxScheduleAhead:
		r.err = Permanentf("snooze of %s is longer than envelope.MaxScheduleAhead (%s)", se.Delay, envelope.MaxScheduleAhead)
		return outcome{}, false
	}
	due := r.finished.Add(se.Delay)
	next := *env
	next.Snoozes++
	next.RunAt = due
	next.StatusETag = "" // the snoozed status below changes the record: the next delivery reads it
	next.Errors = append([]envelope.AttemptError(nil), env.Errors...)
	if err := x.enqueue(ctx, a.d.Queue, &next, min(se.Delay, MaxDelay)); err != nil {
		return infraFailure(err), true
	}
	lines, dropped := r.capture.snapshot()
	t := record.Snoozed(&next, record.Snooze{
		MaxAttempts: a.maxAttempts, Queue: a.d.Queue, StartedAt: r.started, FinishedAt: r.finished, Due: due,
		Lines: lines, Dropped: dropped,
	}).WithArgs(x.shownArgs(env))
	st, wrote, err := x.writeStatus(ctx, t, a.cur, a.etag, r.wroteRunning)
	if err != nil {
		return infraFailure(err), true
	}
	if !wrote && st != nil { // the status moved past this attempt meanwhile
		return x.superseded(ctx, a, st), true
	}
	a.log.Info("job snoozed", "outcome", "snoozed", "snoozes", next.Snoozes, "max_snoozes", limit,
		"delay_ms", se.Delay.Milliseconds(), "due", due)
	return outcome{Outcome: "snoozed", Logs: append(r.capture.text(), fmt.Sprintf("attempt %d of job %s snoozed for %s (snooze %d of at most %d); due at %s",
		env.Attempt, env.JobID, se.Delay.Round(time.Millisecond), next.Snoozes, limit, due.Format(time.RFC3339)))}, true
}

// staleSnooze says why a delivery is of a snooze the status has moved past (a redelivery
// of the message an attempt snoozed from, after the snoozed status was written), or "".
func staleSnooze(cur *record.Status, env *envelope.Envelope) string {
	if cur == nil || cur.Replay != env.Replay || cur.Attempt != env.Attempt || cur.Snoozes <= env.Snoozes {
		return ""
	}
	return fmt.Sprintf("attempt %d already snoozed %d times (this message is of snooze %d)", env.Attempt, cur.Snoozes, env.Snoozes)
}
