package nightshift

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nightshift-jobs/nightshift/envelope"
	"github.com/nightshift-jobs/nightshift/record"
	"github.com/nightshift-jobs/nightshift/storage"
)

// The execution pipeline of one RunJob delivery: admit → run → record
// (docs/architecture.md, docs/semantics.md). Each stage is a small function; a stage that
// ends the delivery early returns its outcome.

// attempt is one delivery on its way through the pipeline.
type attempt struct {
	d           delivery
	env         *envelope.Envelope
	log         *slog.Logger
	entry       *kindEntry
	maxAttempts int
	timeout     time.Duration
	// cur and etag are the status record as admit read it (nil when there is none, or
	// when admit read none: blind).
	cur  *record.Status
	etag storage.ETag
	// blind: a first delivery admitted without reading the status (firstDelivery); its
	// end is one write, create-only or over the envelope's status_etag.
	blind bool
	// claimed: an admit hook wrote the running status (a batch finalizer's claim).
	claimed bool
	// startRecorded: admit wrote the running status of a redelivery (recordRedelivery).
	startRecorded bool
	// args are the job's args as the worker gets them (admit hooks may resolve them:
	// claim-checked, sealed).
	args []byte
	// argsErr is a permanent error resolving the args: the attempt fails without running.
	argsErr error
	// held are releases of what admit hooks hold until the delivery ends (flow.go).
	held []func()
}

// ran is what running an attempt gave.
type ran struct {
	result       any
	err          error
	cancelled    bool
	wroteRunning bool
	started      time.Time
	finished     time.Time
	progress     *record.Progress
	capture      *captureBuf
	// jobCtx is the context the job ran under (before record's own timeout): classify
	// tells a shutdown from a failure by it.
	jobCtx context.Context
}

// runJob handles a RunJob delivery: decoded, it is observed (observer.go) from admission
// to its outcome.
func (x *executor) runJob(ctx context.Context, d delivery) outcome {
	env, derr := envelope.Decode(d.Body)
	if derr != nil {
		return x.undecodable(ctx, d, derr)
	}
	env.Normalize(d.Meta.InsertionTime, d.Meta.ID)
	ctx, obs := x.observe(ctx, d, env)
	out := x.runDecoded(ctx, d, env, obs)
	obs.End(attemptEnd(out))
	return out
}

// runDecoded admits, runs and records a decoded delivery.
func (x *executor) runDecoded(ctx context.Context, d delivery, env *envelope.Envelope, obs AttemptObserver) outcome {
	a, out, ok := x.admit(ctx, d, env, obs)
	if !ok {
		return out
	}
	defer a.releaseHeld()
	obs.Running()
	r := x.run(ctx, a)
	// Record the end even when the handler is shutting down and ctx is cancelled.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer cancel()
	return x.record(rctx, a, r)
}

// admit decides whether the decoded delivery runs: unknown kinds and exhausted attempts
// are dead, stale deliveries are skipped, jobs not due are deferred; then the features'
// admit hooks run (hooks.go: a batch finalizer is claimed, the args are resolved). ok is
// false when the delivery ends here with out. (Undecodable messages never get here:
// runJob poisons them.)
func (x *executor) admit(ctx context.Context, d delivery, env *envelope.Envelope, obs AttemptObserver) (a *attempt, out outcome, ok bool) {
	log := x.log.With("job_id", env.JobID, "kind", env.Kind, "attempt", env.Attempt,
		"dequeue_count", d.Meta.DequeueCount, "invocation_id", d.InvocationID)
	if attrs := obs.LogAttrs(); len(attrs) > 0 {
		log = slog.New(log.Handler().WithAttrs(attrs))
	}
	a = &attempt{d: d, env: env, args: env.Args, log: log}
	if a.entry = x.reg.lookup(env.Kind); a.entry == nil {
		return nil, x.deadNow(ctx, a.log, d, env, record.ReasonUnknownKind,
			fmt.Sprintf("no worker is registered for kind %q (check the name and that this app registers it)", env.Kind)), false
	}
	a.maxAttempts, a.timeout = a.entry.limits(env)
	if a.blind = x.firstDelivery(ctx, d, env); a.blind {
		a.etag = storage.ETag(env.StatusETag)
	} else {
		var err error
		if a.cur, a.etag, err = x.store.GetStatus(ctx, env.JobID); err != nil && !errors.Is(err, storage.ErrNotFound) {
			return nil, infraFailure(err), false
		}
	}
	for _, step := range []func(context.Context, *attempt) (outcome, bool){x.skipStale, x.deferUntilDue, x.deadIfExhausted, x.admitFeatures, x.recordRedelivery, x.claimStep} {
		if out, ok := step(ctx, a); !ok {
			a.releaseHeld()
			return nil, out, false
		}
	}
	return a, outcome{}, true
}

// firstDelivery reports whether the delivery may run without reading its job's status
// first: the host's first delivery (dequeue count 1) of attempt 1 of the job's first life,
// not of a batch (a finalizer's claim reads the status, and a resumed batch enqueues its
// children again) or a workflow (a step runs once even when its message is duplicated:
// the read sees a step that already ended), not due later without status_etag (the durable schedule's), of a job
// the cancel journal does not name. Such a job has no status but the producer's queued record (whose ETag the message
// carries) or none (a raw producer); whatever else wrote meanwhile makes the end write's
// condition fail, and that rare path reads (writeStatus). Redeliveries, retries and
// replays read first, as before (docs/semantics.md, "The write path").
func (x *executor) firstDelivery(ctx context.Context, d delivery, env *envelope.Envelope) bool {
	if d.Meta.DequeueCount > 1 || env.Attempt != 1 || env.Replay != 0 || env.BatchID != "" || env.Meta[MetaWorkflow] != "" || x.cancels == nil {
		return false
	}
	if env.StatusETag == "" && !env.RunAt.IsZero() {
		// From the durable schedule (its queued record is not the message's to name), or
		// a raw producer's delayed job: read first, as a create-only end would fail.
		return false
	}
	return !x.cancels.mayBeCancelled(ctx, x.ext, env.JobID)
}

// undecodable moves a message that is not an envelope to the poison queue verbatim, where
// RunDeadLetter records it with the decoding error; it is never retried pointlessly.
func (x *executor) undecodable(ctx context.Context, d delivery, derr error) outcome {
	if err := x.poison(ctx, d.Queue, d.Body); err != nil {
		return infraFailure(err)
	}
	msg := fmt.Sprintf("message %s is not a valid job envelope (%v); moved to %s", d.Meta.ID, derr, d.Queue+storage.PoisonSuffix)
	x.log.Warn("undecodable message", "message_id", d.Meta.ID, "dequeue_count", d.Meta.DequeueCount,
		"invocation_id", d.InvocationID, "outcome", "poisoned", "error", derr.Error())
	return outcome{Outcome: "poisoned", Logs: []string{msg}}
}

// skipStale acknowledges a delivery of a job that already ended or moved on. When the
// job's end (of this life) is recorded, the end hooks run again first: a crash, or a hook
// that failed, after the status write may have left some undone.
func (x *executor) skipStale(ctx context.Context, a *attempt) (outcome, bool) {
	env, cur := a.env, a.cur
	why := staleDelivery(cur, env)
	if why == "" {
		return outcome{}, true
	}
	if cur.Replay == env.Replay && cur.State.Terminal() {
		if err := x.ended(ctx, jobEnd{env: env, state: cur.State, st: cur, via: endRedelivery}); err != nil {
			return infraFailure(err), false
		}
	}
	return skipped(a, why), false
}

func skipped(a *attempt, why string) outcome {
	a.log.Info("delivery skipped", "outcome", "skipped", "reason", why)
	return outcome{Outcome: "skipped", Logs: []string{"job " + a.env.JobID + ": " + why}}
}

// deferUntilDue puts a job that is not due yet back on its queue, invisible until run_at
// (at most MaxDelay per hop).
func (x *executor) deferUntilDue(ctx context.Context, a *attempt) (outcome, bool) {
	env := a.env
	wait := time.Until(env.RunAt)
	if wait <= time.Second {
		return outcome{}, true
	}
	if err := x.enqueue(ctx, a.d.Queue, env, min(wait, MaxDelay)); err != nil {
		return infraFailure(err), false
	}
	a.log.Info("job deferred", "outcome", "deferred", "run_at", env.RunAt)
	return outcome{Outcome: "deferred", Logs: []string{fmt.Sprintf("job %s deferred until %s", env.JobID, env.RunAt.Format(time.RFC3339))}}, false
}

func (x *executor) deadIfExhausted(ctx context.Context, a *attempt) (outcome, bool) {
	if a.env.Attempt <= a.maxAttempts {
		return outcome{}, true
	}
	return x.deadNow(ctx, a.log, a.d, a.env, record.ReasonAttemptsExhausted,
		fmt.Sprintf("attempt %d is past max_attempts %d", a.env.Attempt, a.maxAttempts)), false
}

// recordRedelivery writes the running status of a redelivery (host dequeue count 2 and
// up) before its worker starts, counting it in the status's runs (record.Running with the
// dequeue count): the dead-letter cause rule compares that count with the host's
// deliveries (record.CauseOf). A first delivery writes nothing here (quick jobs cost one
// write). A redelivery that cannot record its start does not run: the invocation fails
// like any storage failure.
func (x *executor) recordRedelivery(ctx context.Context, a *attempt) (outcome, bool) {
	if a.d.Meta.DequeueCount < 2 || a.argsErr != nil {
		return outcome{}, true
	}
	running := record.Running(a.env, record.Run{MaxAttempts: a.maxAttempts, Queue: a.d.Queue, StartedAt: time.Now().UTC(), DequeueCount: a.d.Meta.DequeueCount})
	if _, _, err := x.store.UpdateStatus(ctx, a.env.JobID, running.Apply); err != nil {
		return infraFailure(err), false
	}
	a.startRecorded = true
	return outcome{}, true
}

// claimStep makes a workflow step's first delivery claim its run before the worker
// starts: the running status is written conditionally on the status admit read, and a
// delivery that finds the step running in this attempt already (another copy of its
// message, delivered at the same time) or loses the write is acknowledged without
// running. So a duplicated step message runs the step once; a redelivery (dequeue count
// 2 and up, recordRedelivery) still takes over the run of a delivery that died. It costs
// workflow steps one write each.
func (x *executor) claimStep(ctx context.Context, a *attempt) (outcome, bool) {
	if a.env.Meta[MetaWorkflow] == "" || a.startRecorded || a.blind || a.argsErr != nil {
		return outcome{}, true
	}
	if c := a.cur; c != nil && c.State == record.StateRunning && c.Replay == a.env.Replay && c.Attempt == a.env.Attempt {
		return skipped(a, "another delivery of this workflow step is running it"), false
	}
	st := record.Running(a.env, record.Run{MaxAttempts: a.maxAttempts, Queue: a.d.Queue, StartedAt: time.Now().UTC()}).Apply(a.cur)
	if st == nil {
		return outcome{}, true
	}
	etag, err := x.store.PutStatus(ctx, st, a.etag)
	switch {
	case storage.IsConflict(err):
		return skipped(a, "another delivery of this workflow step claimed it"), false
	case err != nil:
		return infraFailure(err), false
	}
	a.cur, a.etag, a.startRecorded = st, etag, true
	return outcome{}, true
}

// run runs the worker under its timeout with a capturing logger, progress reports and a
// cancellation watch; panics are recovered (runSafely).
func (x *executor) run(ctx context.Context, a *attempt) ran {
	env := a.env
	logger, capture := newCapture(a.log.Handler(), env.Attempt)
	r := ran{started: time.Now().UTC(), capture: capture, jobCtx: ctx, err: a.argsErr}
	var progress *progressReporter
	if a.argsErr == nil {
		progress = newProgressReporter(context.WithoutCancel(ctx), x.progressInterval, a.log, x.progressWriter(env, a.maxAttempts, r.started, a.d.Queue))
	}
	base := jobBase{
		ID: env.JobID, Kind: env.Kind, Attempt: env.Attempt, MaxAttempts: a.maxAttempts,
		Replay: env.Replay, DequeueCount: a.d.Meta.DequeueCount, Meta: env.Meta,
		EnqueuedAt: env.EnqueuedAt, Logger: logger, BatchID: env.BatchID, ParentID: env.ParentID,
		Snoozes: env.Snoozes, progress: progress,
	}
	runCtx, cancelRun := context.WithCancelCause(ctx)
	defer cancelRun(nil)
	marked := x.watch(ctx, env, a.maxAttempts, r.started, a.d.Queue, a.startRecorded, cancelRun)
	if r.err == nil {
		cp := x.newCheckpointer(a)
		jobCtx := withJobContext(runCtx, &jobContext{client: x.client, jobID: env.JobID, replay: env.Replay, enqueuedAt: env.EnqueuedAt, checkpoint: cp})
		r.result, r.err = runSafely(jobCtx, a.entry, base, a.args, a.timeout)
		cp.stop(ctx)
	}
	r.progress = progress.stop()
	r.wroteRunning = marked() || a.claimed || a.startRecorded || progress.wrote()
	r.cancelled = errors.Is(context.Cause(runCtx), errCancelled)
	r.finished = time.Now().UTC()
	return r
}

// record writes the end of the attempt: cancelled, succeeded, retrying or dead.
func (x *executor) record(ctx context.Context, a *attempt, r ran) outcome {
	env := a.env
	dur := r.finished.Sub(r.started)
	if r.cancelled {
		// Cancelled through its status while running: the status already says so.
		if err := x.ended(ctx, jobEnd{env: env, state: record.StateCancelled, via: endAttempt}); err != nil {
			return infraFailure(err)
		}
		a.log.Info("job cancelled while running", "outcome", "cancelled", "duration_ms", dur.Milliseconds())
		return outcome{Outcome: "cancelled", Logs: append(r.capture.text(), "job "+env.JobID+" was cancelled while running")}
	}
	if out, done := x.snoozed(ctx, a, &r); done {
		return out
	}
	end := record.End{
		MaxAttempts: a.maxAttempts, Queue: a.d.Queue, StartedAt: r.started, FinishedAt: r.finished, Progress: r.progress,
	}
	if r.err == nil {
		res, err := x.storeResult(ctx, env.JobID, r.result)
		if err == nil {
			end.State, end.Result, end.Errors = record.StateSucceeded, res, env.Errors
			return x.succeeded(ctx, a, r, end)
		}
		if !IsPermanent(err) {
			return infraFailure(err)
		}
		r.err = err
	}
	ae := classify(r.jobCtx, r.err, env.Attempt, r.finished, dur, a.timeout)
	env.AddError(ae)
	// The status keeps the whole history: encoding the envelope may shrink env.Errors.
	end.Errors, end.LastError = env.Errors, ae.Error
	if reason, dead := retryDecision(ae, env.Attempt, a.maxAttempts); dead {
		return failed(x.dead(ctx, a, r, end, reason), ae, reason)
	}
	return failed(x.retrying(ctx, a, r, end), ae, "")
}

// failed notes the failure in a failed attempt's outcome, for the observer.
func failed(out outcome, ae envelope.AttemptError, reason record.DeadReason) outcome {
	if out.Err == nil {
		out.class, out.errText, out.reason = ae.Class, ae.Error, reason
	}
	return out
}

// retryDecision is the one retry decision: a permanent error, or a failure of the last
// attempt, makes the job dead (with the reason); anything else is retried.
func retryDecision(ae envelope.AttemptError, attempt, maxAttempts int) (record.DeadReason, bool) {
	switch {
	case ae.Class == "permanent":
		return record.ReasonPermanentError, true
	case attempt >= maxAttempts:
		return record.ReasonAttemptsExhausted, true
	}
	return "", false
}

func (x *executor) succeeded(ctx context.Context, a *attempt, r ran, end record.End) outcome {
	env := a.env
	st, stored, err := x.writeEnd(ctx, a, r, end)
	if err != nil {
		return infraFailure(err)
	}
	if stored != nil {
		return x.superseded(ctx, a, stored)
	}
	if err := x.ended(ctx, jobEnd{env: env, state: record.StateSucceeded, st: st, via: endAttempt}); err != nil {
		return infraFailure(err)
	}
	a.log.Info("job finished", "outcome", "succeeded", "duration_ms", st.DurationMS)
	return outcome{Outcome: "succeeded", Logs: r.capture.text()}
}

// dead moves the job to the poison queue (poisonJob), where RunDeadLetter records it,
// then writes the dead status.
func (x *executor) dead(ctx context.Context, a *attempt, r ran, end record.End, reason record.DeadReason) outcome {
	env := a.env
	if err := x.poisonJob(ctx, a.d.Queue, env, reason); err != nil {
		return infraFailure(err)
	}
	end.State, end.DeadLetter = record.StateDead, record.DeadLetterBlob(env.JobID)
	st, stored, err := x.writeEnd(ctx, a, r, end)
	if err != nil {
		return infraFailure(err)
	}
	if stored != nil {
		return x.superseded(ctx, a, stored)
	}
	if err := x.ended(ctx, jobEnd{env: env, state: record.StateDead, st: st, via: endAttempt}); err != nil {
		return infraFailure(err)
	}
	a.log.Warn("job failed", "outcome", "dead", "reason", reason, "duration_ms", st.DurationMS, "error", st.LastError)
	return outcome{Outcome: "dead", Logs: append(r.capture.text(), fmt.Sprintf("job %s is dead (%s): %s", env.JobID, reason, st.LastError))}
}

// retrying enqueues the next attempt with its backoff delay, then writes "retrying". The
// retry goes on the queue first: a crash in between leaves a status that lets the
// redelivered original run again, never a lost job.
func (x *executor) retrying(ctx context.Context, a *attempt, r ran, end record.End) outcome {
	env := a.env
	delay := a.entry.opts.Backoff.NextDelay(env.Attempt)
	next := *env
	next.Attempt++
	next.DeadReason, next.StatusETag = "", ""
	// Encode may shrink the history to fit the message; the status keeps all of it.
	next.Errors = append([]envelope.AttemptError(nil), env.Errors...)
	if err := x.enqueue(ctx, a.d.Queue, &next, delay); err != nil {
		return infraFailure(err)
	}
	end.State, end.NextRunAt = record.StateRetrying, r.finished.Add(delay)
	st, stored, err := x.writeEnd(ctx, a, r, end)
	if err != nil {
		return infraFailure(err)
	}
	if stored != nil {
		return x.superseded(ctx, a, stored)
	}
	a.log.Warn("job failed", "outcome", "retrying", "duration_ms", st.DurationMS, "error", st.LastError,
		"next_attempt", next.Attempt, "delay_ms", delay.Milliseconds())
	return outcome{Outcome: "retrying", Logs: append(r.capture.text(),
		fmt.Sprintf("attempt %d of job %s failed: %s; attempt %d in %s", env.Attempt, env.JobID, st.LastError, next.Attempt, delay.Round(time.Millisecond)))}
}

// writeEnd writes the attempt's final status with its captured logs (record.Ended) and
// returns the status it proposed, without the logs and fields kept from the record: what
// the job-end callback receives. stored is the status when the end was not written
// because the record had moved past the attempt (nil when it was written).
func (x *executor) writeEnd(ctx context.Context, a *attempt, r ran, end record.End) (proposed, stored *record.Status, err error) {
	end.Lines, end.Dropped = r.capture.snapshot()
	t := record.Ended(a.env, end).WithArgs(x.shownArgs(a.env))
	st, wrote, err := x.writeStatus(ctx, t, a.cur, a.etag, r.wroteRunning)
	if err != nil || wrote || st == nil {
		return t.Proposed(), nil, err
	}
	return t.Proposed(), st, nil
}

// superseded ends a delivery whose end was not recorded because the status had moved
// past its attempt meanwhile (another delivery's end, a cancellation, a later attempt):
// like a stale delivery, it runs the end hooks of the recorded end of this life again
// (idempotent) and is acknowledged.
func (x *executor) superseded(ctx context.Context, a *attempt, stored *record.Status) outcome {
	why := staleDelivery(stored, a.env)
	if why == "" {
		why = fmt.Sprintf("status is %s (attempt %d); this attempt's end is not recorded", stored.State, stored.Attempt)
	}
	if stored.Replay == a.env.Replay && stored.State.Terminal() {
		if err := x.ended(ctx, jobEnd{env: a.env, state: stored.State, st: stored, via: endRedelivery}); err != nil {
			return infraFailure(err)
		}
	}
	return skipped(a, "ran, but "+why)
}
