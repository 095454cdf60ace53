package nightshift

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/nightshift-jobs/nightshift/envelope"
	"github.com/nightshift-jobs/nightshift/hostproto"
	"github.com/nightshift-jobs/nightshift/internal/jobrun"
	"github.com/nightshift-jobs/nightshift/record"
)

// The test kit (package nightshifttest) runs one attempt of a worker through the
// pipeline's own run stage (executor.run: capturing, redacting logger, progress, timeout,
// panic recovery), then classifies and encodes the outcome with the handler's own
// functions (classify, retryDecision, storeResult) — without storage, and without a
// public entry point in this package: it reaches runTestAttempt through internal/jobrun.
func init() { jobrun.Run = runTestAttempt }

// never is a delay that does not pass during a test: the run stage's "running" status
// write and cancel checks are never due.
const never = time.Duration(math.MaxInt64)

// resultSink stands in for the records the run stage and storeResult touch: progress
// writes are dropped (the observer records every report instead) and a result too large
// to stay inline is kept here instead of in a blob. Any other storage call panics: the
// run stage makes none.
type resultSink struct {
	recordStore
	mu   sync.Mutex
	data []byte
}

func (s *resultSink) UpdateStatus(context.Context, string, func(*record.Status) *record.Status) (*record.Status, bool, error) {
	return nil, false, nil
}

func (s *resultSink) PutResult(_ context.Context, _, _ string, data []byte) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.data = append([]byte(nil), data...)
	return true, nil
}

func runTestAttempt(ctx context.Context, req *jobrun.Request) (*jobrun.Result, error) {
	reg, _ := req.Registry.(*Registry)
	if reg == nil {
		return nil, errors.New("nightshifttest: no registry")
	}
	e := reg.lookup(req.Kind)
	if e == nil {
		return nil, fmt.Errorf("nightshifttest: no worker is registered for kind %q", req.Kind)
	}
	client, _ := req.Client.(*Client)
	env := &envelope.Envelope{
		JobID: req.JobID, Kind: req.Kind, Args: req.Args, Attempt: req.Attempt, MaxAttempts: req.MaxAttempts,
		Replay: req.Replay, Meta: req.Meta, EnqueuedAt: req.EnqueuedAt, BatchID: req.BatchID, ParentID: req.ParentID,
		TimeoutSeconds: req.Timeout.Seconds(),
	}
	log := req.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// The attributes the handler's log gives a job's records (admit).
	log = log.With("job_id", env.JobID, "kind", env.Kind, "attempt", env.Attempt, "dequeue_count", req.DequeueCount)
	sink := &resultSink{}
	x := &executor{reg: reg, store: sink, log: log, runningAfter: never, cancelCheck: never,
		progressInterval: ProgressInterval, client: client}
	a := &attempt{d: delivery{Meta: hostproto.QueueMeta{DequeueCount: req.DequeueCount}}, env: env, log: log, entry: e, args: req.Args}
	a.maxAttempts, a.timeout = e.limits(env)

	out := &jobrun.Result{}
	var mu sync.Mutex
	ctx = withProgressObserver(ctx, func(p record.Progress) {
		mu.Lock()
		defer mu.Unlock()
		out.Progress = append(out.Progress, jobrun.Progress{Fraction: p.Fraction, Message: p.Message})
	})
	r := x.run(ctx, a)
	out.Value, out.Started, out.Finished, out.Logs = r.result, r.started, r.finished, r.capture.text()
	if r.err == nil {
		res, err := x.storeResult(ctx, env.JobID, r.result)
		if err == nil {
			out.Outcome = "succeeded"
			setResultData(out, res, sink)
			return out, nil
		}
		r.err = err // a result that cannot be encoded: permanent
	}
	if se := (*SnoozeError)(nil); errors.As(r.err, &se) && se.Delay <= envelope.MaxScheduleAhead {
		// The first snooze of a job is within every kind's MaxSnoozes (snooze.go).
		out.Err, out.Outcome, out.RetryIn = r.err, "snoozed", se.Delay
		return out, nil
	}
	ae := classify(r.jobCtx, r.err, env.Attempt, r.finished, r.finished.Sub(r.started), a.timeout)
	out.Err, out.Class, out.LastError = r.err, ae.Class, ae.Error
	if reason, dead := retryDecision(ae, env.Attempt, a.maxAttempts); dead {
		out.Outcome, out.DeadReason = "dead", string(reason)
	} else {
		out.Outcome, out.RetryIn = "retrying", e.opts.Backoff.NextDelay(env.Attempt)
	}
	return out, nil
}

// setResultData copies the stored form of a result (inline JSON, inline bytes or the
// blob's content) into out.
func setResultData(out *jobrun.Result, res *record.Result, sink *resultSink) {
	if res == nil {
		return
	}
	out.ContentType = res.ContentType
	switch {
	case res.JSON != nil:
		out.Data, out.IsJSON = res.JSON, true
	case res.Bytes != nil:
		out.Data = res.Bytes
	default:
		sink.mu.Lock()
		out.Data = sink.data
		sink.mu.Unlock()
		_, isBytes := out.Value.(Bytes)
		_, isPtr := out.Value.(*Bytes)
		_, isRaw := out.Value.([]byte)
		out.IsJSON = !isBytes && !isPtr && !isRaw
	}
}
