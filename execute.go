package nightshift

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nightshift-jobs/nightshift/envelope"
	"github.com/nightshift-jobs/nightshift/hostproto"
	"github.com/nightshift-jobs/nightshift/record"
	"github.com/nightshift-jobs/nightshift/storage"
)

// executor carries out the execution semantics of docs/semantics.md for one delivered
// queue message: decode, skip stale or finished jobs, run, then record the success,
// re-enqueue with backoff, or move the job to the poison queue.
type executor struct {
	reg   *Registry
	store recordStore
	log   *slog.Logger
	// runningAfter: an attempt still running after this long gets a "running" status
	// write; quicker jobs cost a single status write in all.
	runningAfter time.Duration
	// cancelCheck: how often a running job's status is read to notice a cancellation.
	cancelCheck time.Duration
	// features hook batches, dedupe keys, payloads and the job-end callback into the
	// pipeline, in order (hooks.go, newFeatures).
	features []feature
	// ext is the storage for batches, dedupe locks and claim-checked payloads; only jobs
	// that use those features touch it.
	ext *storage.Clients
	// client is handed to running jobs (JobClient, StartBatch).
	client *Client
	// maxPayload bounds claim-checked args (HandlerOptions.MaxPayloadBytes).
	maxPayload int64
	// progressInterval throttles progress writes (ProgressInterval).
	progressInterval time.Duration
	// maxDequeueCount is the host's (HandlerOptions.MaxDequeueCount): the deliveries
	// behind a host_retries_exhausted dead letter, for its cause (record.CauseOf).
	maxDequeueCount int
	// obs hears the deliveries (HandlerOptions.Observer; nil: none).
	obs Observer
	// cancels is the copy of the cancel journal (cancels.go); nil: every delivery reads
	// its job's status before it runs.
	cancels *cancelWatch
}

// recordStore is the part of *storage.Clients the executor uses.
type recordStore interface {
	GetStatus(ctx context.Context, jobID string) (*record.Status, storage.ETag, error)
	PutStatus(ctx context.Context, st *record.Status, etag storage.ETag) (storage.ETag, error)
	UpdateStatus(ctx context.Context, jobID string, change func(cur *record.Status) *record.Status) (*record.Status, bool, error)
	PutResult(ctx context.Context, jobID, contentType string, data []byte) (bool, error)
	Enqueue(ctx context.Context, queue string, text []byte, delay, ttl time.Duration) (string, error)
	GetDeadLetter(ctx context.Context, deadID string) (*record.DeadLetter, storage.ETag, error)
	PutDeadLetter(ctx context.Context, d *record.DeadLetter, etag storage.ETag) (storage.ETag, error)
}

// delivery is one queue message handed to a function.
type delivery struct {
	Queue        string
	Body         []byte
	Meta         hostproto.QueueMeta
	InvocationID string
}

// outcome is what happened to a delivery. Err is an infrastructure failure (storage
// unreachable): the invocation must fail so the host delivers the message again.
type outcome struct {
	Outcome string
	Logs    []string
	Err     error
	// class, errText and reason describe a failed attempt to the observer.
	class, errText string
	reason         record.DeadReason
}

func infraFailure(err error) outcome { return outcome{Outcome: "error", Err: err} }

// staleDelivery says why a delivery must not run ("" when it should): its job already
// ended, or a later attempt or life of it exists. Messages can arrive twice (at-least-once
// delivery, a crash before the host deleted the message, a duplicate enqueue).
func staleDelivery(cur *record.Status, env *envelope.Envelope) string {
	switch {
	case cur == nil:
		return ""
	case cur.Replay > env.Replay:
		return fmt.Sprintf("message belongs to life %d of the job, which has been replayed (now life %d)", env.Replay, cur.Replay)
	case cur.Replay < env.Replay:
		return ""
	case cur.State.Terminal():
		return fmt.Sprintf("job already %s; not running it again", cur.State)
	case cur.Attempt > env.Attempt:
		return fmt.Sprintf("attempt %d is superseded by attempt %d", env.Attempt, cur.Attempt)
	case cur.Attempt == env.Attempt && cur.State == record.StateRetrying:
		return fmt.Sprintf("attempt %d already failed and its retry is enqueued", env.Attempt)
	}
	return staleSnooze(cur, env)
}

// runSafely runs the worker with the attempt's timeout, turning a panic into a PanicError.
func runSafely(ctx context.Context, e *kindEntry, b jobBase, args json.RawMessage, timeout time.Duration) (result any, err error) {
	runCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	defer func() {
		if v := recover(); v != nil {
			err = &PanicError{Value: v, Stack: string(debug.Stack())}
		}
	}()
	return e.run(runCtx, b, args)
}

// classify turns a worker error into an attempt record.
func classify(ctx context.Context, err error, attempt int, at time.Time, dur, timeout time.Duration) envelope.AttemptError {
	ae := envelope.AttemptError{Attempt: attempt, At: at, Error: err.Error(), Class: "retryable"}
	var pe *PanicError
	switch {
	case errors.As(err, &pe):
		ae.Class = "panic"
		ae.Stack = pe.Stack
	case IsPermanent(err):
		ae.Class = "permanent"
	case ctx.Err() != nil:
		ae.Class = "cancelled"
		ae.Error = "interrupted: the handler is shutting down (" + err.Error() + ")"
	case errors.Is(err, context.DeadlineExceeded) || dur >= timeout:
		ae.Class = "timeout"
		ae.Error = fmt.Sprintf("attempt timed out after %s: %s", timeout, err.Error())
	}
	return ae
}

// errCancelled is the cause given to a running job's context when its status says
// cancelled.
var errCancelled = errors.New("job cancelled")

// watch writes a "running" status if the attempt is still going after runningAfter (unless
// written says admit already wrote it), then reads the status every cancelCheck and
// cancels the run when it says cancelled. The returned func stops watching and reports
// whether it wrote the running status.
func (x *executor) watch(ctx context.Context, env *envelope.Envelope, maxAttempts int, started time.Time, queue string, written bool, cancelRun context.CancelCauseFunc) func() bool {
	done := make(chan struct{})
	wrote := make(chan bool, 1)
	go func() {
		t := time.NewTimer(x.runningAfter)
		defer t.Stop()
		select {
		case <-done:
			wrote <- false
			return
		case <-t.C:
		}
		ok := !written && x.markRunning(ctx, env, maxAttempts, started, queue)
		tick := time.NewTicker(x.cancelCheck)
		defer tick.Stop()
		for {
			select {
			case <-done:
				wrote <- ok
				return
			case <-tick.C:
				if cur, _, err := x.store.GetStatus(ctx, env.JobID); err == nil && cur.State == record.StateCancelled && cur.Replay == env.Replay {
					cancelRun(errCancelled)
				}
			}
		}
	}()
	return func() bool {
		close(done)
		return <-wrote
	}
}

// markRunning records that the attempt is running, unless the status is already ahead.
func (x *executor) markRunning(ctx context.Context, env *envelope.Envelope, maxAttempts int, started time.Time, queue string) bool {
	running := record.Running(env, record.Run{MaxAttempts: maxAttempts, Queue: queue, StartedAt: started})
	_, ok, err := x.store.UpdateStatus(ctx, env.JobID, running.Apply)
	if err != nil {
		x.log.Warn("could not record running status", "job_id", env.JobID, "error", err.Error())
	}
	return ok
}

// writeStatus records the attempt's end (t, a record.Ended transition) and returns the
// status as stored afterwards and whether this call wrote it. The fast path is one
// conditional write: against the status read before the run (cur, etag), or, for a first
// delivery that read none, create-only (etag "") or over the producer's queued record
// (the envelope's status_etag). When anything else wrote meanwhile, it re-reads and
// applies t again over what it finds (t.Apply writes nothing when the status has moved
// past this attempt: a cancellation, another delivery's end).
func (x *executor) writeStatus(ctx context.Context, t *record.Transition, cur *record.Status, etag storage.ETag, reread bool) (*record.Status, bool, error) {
	build := t.Apply
	if !reread {
		next := build(cur)
		if next == nil {
			return cur, false, nil
		}
		_, err := x.store.PutStatus(ctx, next, etag)
		if err == nil {
			return next, true, nil
		}
		if !storage.IsConflict(err) {
			return nil, false, err
		}
	}
	return x.store.UpdateStatus(ctx, t.Proposed().JobID, build)
}

// recordTimeout bounds the storage writes that record an attempt's end.
const recordTimeout = 30 * time.Second

// maxInlineBytes bounds a non-JSON result kept inside the status record.
const maxInlineBytes = 4 * 1024

// storeResult encodes a worker's result and stores it inline or as a blob. A result that
// cannot be encoded is a permanent error: retrying would produce the same value.
func (x *executor) storeResult(ctx context.Context, jobID string, v any) (*record.Result, error) {
	var ct string
	var data []byte
	isJSON := false
	switch r := v.(type) {
	case nil:
		return nil, nil
	case Bytes:
		ct, data = r.ContentType, r.Data
		if ct == "" {
			ct = "application/octet-stream"
		}
	case *Bytes:
		if r == nil {
			return nil, nil
		}
		ct, data = r.ContentType, r.Data
		if ct == "" {
			ct = "application/octet-stream"
		}
	case []byte:
		ct, data = "application/octet-stream", r
	case json.RawMessage:
		if !json.Valid(r) {
			return nil, Permanentf("result json.RawMessage is not valid JSON")
		}
		ct, data, isJSON = "application/json", r, true
	default:
		b, err := json.Marshal(v)
		if err != nil {
			return nil, Permanentf("result %T cannot be encoded as JSON: %w", v, err)
		}
		ct, data, isJSON = "application/json", b, true
	}
	res := &record.Result{ContentType: ct, Size: int64(len(data))}
	switch {
	case isJSON && len(data) <= record.MaxInlineResult:
		res.JSON = data
	case !isJSON && len(data) <= maxInlineBytes:
		res.Bytes = data
		if res.Bytes == nil {
			res.Bytes = []byte{}
		}
	default:
		if _, err := x.store.PutResult(ctx, jobID, ct, data); err != nil {
			return nil, err
		}
		res.Blob = storage.ResultBlob(jobID)
	}
	return res, nil
}

// deadNow sends a job that must not run (unknown kind, attempts past the maximum) to the
// poison queue with the reason, and records its status as dead.
func (x *executor) deadNow(ctx context.Context, log *slog.Logger, d delivery, env *envelope.Envelope, reason record.DeadReason, detail string) outcome {
	env.AddError(envelope.AttemptError{Attempt: env.Attempt, At: time.Now().UTC(), Error: detail, Class: "permanent"})
	if err := x.poisonJob(ctx, d.Queue, env, reason); err != nil {
		return infraFailure(err)
	}
	log.Warn("job not run", "outcome", "dead", "reason", reason, "error", detail)
	return outcome{Outcome: "dead", Logs: []string{fmt.Sprintf("job %s is dead (%s): %s", env.JobID, reason, detail)},
		class: "permanent", errText: detail, reason: reason}
}

func (x *executor) enqueue(ctx context.Context, queue string, env *envelope.Envelope, delay time.Duration) error {
	body, err := env.Encode()
	if err != nil {
		return err
	}
	_, err = x.store.Enqueue(ctx, queue, body, delay, 0)
	return err
}

// poisonJob sends a dead job to the poison queue (poison) with the reason in its
// envelope: the path of every job that is dead before RunDeadLetter records it, run or not
// (record's dead, admit's deadNow).
func (x *executor) poisonJob(ctx context.Context, queue string, env *envelope.Envelope, reason record.DeadReason) error {
	env.DeadReason = string(reason)
	body, err := env.Encode()
	if err != nil {
		return err
	}
	return x.poison(ctx, queue, body)
}

// poison is the one poison writer: it puts a message on the queue's poison sibling, where
// RunDeadLetter records it. Dead jobs come through poisonJob; an undecodable message is
// moved verbatim.
func (x *executor) poison(ctx context.Context, queue string, body []byte) error {
	_, err := x.store.Enqueue(ctx, queue+storage.PoisonSuffix, body, 0, 0)
	return err
}

// recordDead handles a RunDeadLetter delivery: whatever arrives on a poison queue becomes
// a durable dead-letter record, and the job's status becomes dead. It copes with valid
// envelopes, garbage text and bytes; it only fails when storage does.
func (x *executor) recordDead(ctx context.Context, d delivery) outcome {
	now := time.Now().UTC()
	sum := sha256.Sum256(d.Body)
	dl := &record.DeadLetter{
		DeadID: "msg-" + hex.EncodeToString(sum[:16]),
		Queue:  strings.TrimSuffix(d.Queue, storage.PoisonSuffix),
		DiedAt: now, PoisonMessageID: d.Meta.ID, PoisonInsertedAt: d.Meta.InsertionTime,
	}
	env, derr := envelope.Decode(d.Body)
	if derr != nil {
		dl.Reason = record.ReasonUndecodable
		dl.Detail = derr.Error()
		if utf8.Valid(d.Body) {
			dl.Raw = string(d.Body)
		} else {
			dl.RawBase64 = d.Body
		}
	} else {
		if env.JobID != "" {
			dl.DeadID, dl.JobID = env.JobID, env.JobID
		}
		// The queued record's ETag is the first delivery's alone; the record keeps none.
		env.StatusETag = ""
		dl.Kind, dl.Envelope, dl.EnqueuedAt = env.Kind, env, env.EnqueuedAt
		switch {
		case env.DeadReason != "":
			dl.Reason = record.DeadReason(env.DeadReason)
			if n := len(env.Errors); n > 0 {
				dl.Detail = env.Errors[n-1].Error
			}
		case x.reg.lookup(env.Kind) == nil:
			dl.Reason = record.ReasonUnknownKind
			dl.Detail = fmt.Sprintf("no worker is registered for kind %q", env.Kind)
		default:
			dl.Reason = record.ReasonHostRetriesExhausted
			dl.Detail = fmt.Sprintf("the Functions host moved the message to %s after its maxDequeueCount deliveries failed "+
				"(handler crash, function timeout or storage errors); no attempt recorded an error", d.Queue)
			cause, note, err := x.hostRetriesCause(ctx, env)
			if err != nil {
				return infraFailure(err)
			}
			dl.Cause, dl.Detail = cause, dl.Detail+"; "+note
			env.AddError(envelope.AttemptError{Attempt: max(env.Attempt, 1), At: now, Error: dl.Detail, Class: "host"})
		}
		dl.Errors = env.Errors
		if err := x.redactDeadArgs(ctx, dl, env); err != nil {
			return infraFailure(err)
		}
	}
	if dl.Cause == "" {
		dl.Cause = record.CauseJob
	}
	log := x.log.With("dead_id", dl.DeadID, "kind", dl.Kind, "reason", dl.Reason, "cause", dl.Cause, "invocation_id", d.InvocationID,
		"dequeue_count", d.Meta.DequeueCount)

	wrote, err := x.putDeadLetter(ctx, dl)
	if err != nil {
		return infraFailure(err)
	}
	if dl.JobID != "" {
		dead := record.DeadLettered(env, dl, now)
		if _, _, err := x.store.UpdateStatus(ctx, dl.JobID, dead.Apply); err != nil {
			return infraFailure(err)
		}
		if err := x.ended(ctx, jobEnd{env: env, state: record.StateDead, st: dead.Proposed(), via: endDeadLetter}); err != nil {
			return infraFailure(err)
		}
	}
	x.observeDead(ctx, dl, env, wrote, now)
	if !wrote {
		log.Info("dead letter already recorded", "outcome", "duplicate")
		return outcome{Outcome: "duplicate", Logs: []string{"dead letter " + dl.DeadID + " already recorded"}}
	}
	log.Warn("dead letter recorded", "outcome", "recorded", "detail", dl.Detail)
	return outcome{Outcome: "recorded", Logs: []string{fmt.Sprintf("dead letter %s recorded (%s): %s", dl.DeadID, dl.Reason, dl.Detail)}}
}

// hostRetriesCause is the cause of a host_retries_exhausted dead letter of env, with a
// note saying why: the cause rule (record.CauseOf) over the job's status as it is before
// the dead status is written. A message without a job id has no status to count its runs
// in: it counts as the job's (CauseJob), so that no group replay of crash-caused letters
// runs it blindly.
func (x *executor) hostRetriesCause(ctx context.Context, env *envelope.Envelope) (record.DeadCause, string, error) {
	if env.JobID == "" {
		return record.CauseJob, "cause job: a message without job_id has no status to count its runs", nil
	}
	cur, _, err := x.store.GetStatus(ctx, env.JobID)
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return "", "", err
	}
	attempt := max(env.Attempt, 1)
	cause := record.CauseOf(record.ReasonHostRetriesExhausted, cur, env.Replay, attempt, x.maxDequeueCount)
	if cur == nil || cur.Replay != env.Replay || cur.Attempt != attempt || cur.State != record.StateRunning {
		return cause, fmt.Sprintf("cause %s: the status never saw attempt %d start", cause, attempt), nil
	}
	return cause, fmt.Sprintf("cause %s: %d of the host's %d redeliveries of attempt %d ran the job", cause, cur.Runs, x.maxDequeueCount-1, attempt), nil
}

// putDeadLetter creates the record, or replaces an existing one only when this is a new
// death (a later life of a replayed job). A redelivered poison message writes nothing.
func (x *executor) putDeadLetter(ctx context.Context, dl *record.DeadLetter) (bool, error) {
	for try := 0; try < 20; try++ {
		cur, etag, err := x.store.GetDeadLetter(ctx, dl.DeadID)
		if err != nil && !errors.Is(err, storage.ErrNotFound) {
			return false, err
		}
		if cur != nil {
			sameDeath := dl.Envelope == nil || cur.Envelope == nil || dl.Envelope.Replay <= cur.Envelope.Replay
			if sameDeath {
				return false, nil
			}
			dl.Replays, dl.ReplayedAt = cur.Replays, cur.ReplayedAt
		}
		if _, err := x.store.PutDeadLetter(ctx, dl, etag); err != nil {
			if storage.IsConflict(err) {
				continue
			}
			return false, err
		}
		return true, nil
	}
	return false, fmt.Errorf("dead letter %s: too many concurrent writers", dl.DeadID)
}
