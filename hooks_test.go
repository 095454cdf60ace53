package nightshift

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/nightshift-jobs/nightshift/envelope"
	"github.com/nightshift-jobs/nightshift/record"
	"github.com/nightshift-jobs/nightshift/storage"
)

// fakeFeature records its hook calls in a shared log; refuse makes its admit end the
// delivery, failEnds makes that many of its end hooks fail.
type fakeFeature struct {
	name     string
	log      *[]string
	refuse   bool
	failEnds int
}

func (f *fakeFeature) admit(_ context.Context, a *attempt) (outcome, bool) {
	*f.log = append(*f.log, "admit "+f.name)
	if f.refuse {
		return outcome{Outcome: "refused by " + f.name}, false
	}
	return outcome{}, true
}

var viaNames = map[endVia]string{endAttempt: "attempt", endDeadLetter: "dead-letter", endRedelivery: "redelivery"}

func (f *fakeFeature) ended(_ context.Context, e jobEnd) error {
	*f.log = append(*f.log, fmt.Sprintf("ended %s %s %s", f.name, e.state, viaNames[e.via]))
	if f.failEnds > 0 {
		f.failEnds--
		return errors.New("end hook of " + f.name + " failed")
	}
	return nil
}

type hookArgs struct{}

func (hookArgs) Kind() string { return "test.hooks" }

// hookExecutor returns an executor on in-memory records whose feature list is fakes a, b
// and c, and a counter of the worker's runs.
func hookExecutor(t *testing.T, b *fakeFeature) (*executor, *[]string, *atomic.Int64) {
	t.Helper()
	reg := NewRegistry()
	runs := &atomic.Int64{}
	AddWorkerFunc(reg, func(ctx context.Context, j *Job[hookArgs]) (any, error) {
		runs.Add(1)
		return nil, nil
	}, nil)
	h := NewHandler(reg, &storage.Clients{}, &HandlerOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	x := h.exec
	x.store = &memStore{statuses: map[string]*record.Status{}}
	calls := &[]string{}
	b.name, b.log = "b", calls
	x.features = []feature{&fakeFeature{name: "a", log: calls}, b, &fakeFeature{name: "c", log: calls}}
	return x, calls, runs
}

func hookDelivery(jobID string) delivery {
	return delivery{Queue: "jobs", Body: []byte(`{"job_id":"` + jobID + `","kind":"test.hooks"}`)}
}

func wantCalls(t *testing.T, got *[]string, want ...string) {
	t.Helper()
	if !reflect.DeepEqual(*got, want) {
		t.Fatalf("hook calls:\n  %s\nwant:\n  %s", strings.Join(*got, "\n  "), strings.Join(want, "\n  "))
	}
	*got = (*got)[:0]
}

// The pipeline calls every feature's admit hook, then (the job ran) every end hook, in
// list order.
func TestHookOrder(t *testing.T) {
	x, calls, runs := hookExecutor(t, &fakeFeature{})
	if out := x.runJob(context.Background(), hookDelivery("job-hooks-1")); out.Err != nil || out.Outcome != "succeeded" {
		t.Fatalf("outcome %+v", out)
	}
	wantCalls(t, calls, "admit a", "admit b", "admit c",
		"ended a succeeded attempt", "ended b succeeded attempt", "ended c succeeded attempt")
	if runs.Load() != 1 {
		t.Fatalf("runs %d", runs.Load())
	}
}

// A failing end hook fails the invocation and the hooks after it do not run; the
// redelivered message does not run the job again but runs every end hook again.
func TestHookEndFailureRetriedOnRedelivery(t *testing.T) {
	x, calls, runs := hookExecutor(t, &fakeFeature{failEnds: 1})
	d := hookDelivery("job-hooks-2")
	if out := x.runJob(context.Background(), d); out.Err == nil || out.Outcome != "error" {
		t.Fatalf("a failed end hook must fail the invocation: %+v", out)
	}
	wantCalls(t, calls, "admit a", "admit b", "admit c", "ended a succeeded attempt", "ended b succeeded attempt")
	if out := x.runJob(context.Background(), d); out.Err != nil || out.Outcome != "skipped" {
		t.Fatalf("redelivery: %+v", out)
	}
	wantCalls(t, calls, "ended a succeeded redelivery", "ended b succeeded redelivery", "ended c succeeded redelivery")
	if runs.Load() != 1 {
		t.Fatalf("runs %d", runs.Load())
	}
}

// An admit hook that ends the delivery stops the features after it, and the job does not
// run (no end hooks).
func TestHookAdmitRefusal(t *testing.T) {
	x, calls, runs := hookExecutor(t, &fakeFeature{refuse: true})
	if out := x.runJob(context.Background(), hookDelivery("job-hooks-3")); out.Err != nil || out.Outcome != "refused by b" {
		t.Fatalf("outcome %+v", out)
	}
	wantCalls(t, calls, "admit a", "admit b")
	if runs.Load() != 0 {
		t.Fatalf("runs %d", runs.Load())
	}
}

// A dead letter runs the end hooks in order, as dead via the dead letter.
func TestHookOrderDeadLetter(t *testing.T) {
	x, calls, _ := hookExecutor(t, &fakeFeature{})
	d := hookDelivery("job-hooks-4")
	d.Queue = "jobs-poison"
	if out := x.recordDead(context.Background(), d); out.Err != nil || out.Outcome != "recorded" {
		t.Fatalf("outcome %+v", out)
	}
	wantCalls(t, calls, "ended a dead dead-letter", "ended b dead dead-letter", "ended c dead dead-letter")
}

// The executor's features run in this order: pauses, batch, dedupe key, payloads, concurrency, callback.
func TestFeatureListOrder(t *testing.T) {
	h := NewHandler(NewRegistry(), &storage.Clients{}, &HandlerOptions{Logger: slog.New(slog.DiscardHandler)})
	var got []string
	for _, f := range h.exec.features {
		got = append(got, fmt.Sprintf("%T", f))
	}
	want := []string{"*nightshift.pauses", "*nightshift.checkpoints", "*nightshift.batches", "nightshift.uniqueKeys", "nightshift.payloads", "nightshift.concurrency", "nightshift.workflows", "nightshift.callbacks"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("features %v, want %v", got, want)
	}
}

// HandlerOptions.OnJobEnd is called for a job with a callback when it succeeds, and when
// it is dead once its dead letter is recorded (not when its attempt poisons it); never for
// a cancelled job or one without a callback. Its error is the hook's.
func TestCallbackHookRules(t *testing.T) {
	withCB := &envelope.Envelope{JobID: "j", Callback: &envelope.Callback{Queue: "hooks"}}
	without := &envelope.Envelope{JobID: "j"}
	failing := errors.New("unreachable")
	for _, c := range []struct {
		env   *envelope.Envelope
		state record.State
		via   endVia
		call  bool
	}{
		{withCB, record.StateSucceeded, endAttempt, true},
		{withCB, record.StateSucceeded, endRedelivery, true},
		{withCB, record.StateDead, endAttempt, false},
		{withCB, record.StateDead, endDeadLetter, true},
		{withCB, record.StateDead, endRedelivery, true},
		{withCB, record.StateCancelled, endAttempt, false},
		{withCB, record.StateCancelled, endRedelivery, false},
		{without, record.StateSucceeded, endAttempt, false},
		{without, record.StateDead, endDeadLetter, false},
	} {
		called := false
		cb := callbacks{onJobEnd: func(ctx context.Context, env *envelope.Envelope, st *record.Status) error {
			called = true
			return failing
		}}
		st := &record.Status{JobID: "j", State: c.state}
		err := cb.ended(context.Background(), jobEnd{env: c.env, state: c.state, st: st, via: c.via})
		if called != c.call || (err != nil) != c.call || (err != nil && !errors.Is(err, failing)) {
			t.Errorf("callback %v, %s via %s: called %v, err %v", c.env.Callback != nil, c.state, viaNames[c.via], called, err)
		}
	}
	if err := (callbacks{}).ended(context.Background(), jobEnd{env: withCB, state: record.StateSucceeded}); err != nil {
		t.Fatalf("no OnJobEnd: %v", err)
	}
}
