package record_test

import (
	"testing"

	"github.com/nightshift-jobs/nightshift/envelope"
	"github.com/nightshift-jobs/nightshift/record"
)

// TestRunsCountRedeliveries: each redelivery (dequeue count 2 and up) of an attempt that
// writes its start is counted once in Runs, however often it writes; first deliveries and
// progress writes count nothing; a later attempt starts over; the end and the dead status
// of the attempt keep the count.
func TestRunsCountRedeliveries(t *testing.T) {
	env := &envelope.Envelope{JobID: "j", Kind: "k", Attempt: 1}
	var st *record.Status
	write := func(dq int) {
		t.Helper()
		next := record.Running(env, record.Run{DequeueCount: dq}).Apply(st)
		if next == nil {
			t.Fatalf("running write of dequeue count %d did not apply over %+v", dq, st)
		}
		st = next
	}
	steps := []struct {
		dq, runs, last int
	}{
		{1, 0, 0}, // the first delivery's late running write
		{2, 1, 2},
		{2, 1, 2}, // progress of the same delivery (or a repeated write)
		{0, 1, 2}, // a progress write
		{3, 2, 3},
		{5, 3, 5}, // delivery 4 never reached the handler
		{4, 3, 5}, // an older delivery, late: not counted
	}
	for i, s := range steps {
		write(s.dq)
		if st.Runs != s.runs || st.RunDequeueCount != s.last {
			t.Fatalf("step %d (dequeue count %d): runs %d, last %d; want %d, %d", i, s.dq, st.Runs, st.RunDequeueCount, s.runs, s.last)
		}
	}
	ended := record.Ended(env, record.End{State: record.StateRetrying}).Apply(st)
	if ended.Runs != 3 || ended.RunDequeueCount != 5 {
		t.Fatalf("ended: runs %d, last %d", ended.Runs, ended.RunDequeueCount)
	}
	dl := &record.DeadLetter{DeadID: "j", JobID: "j", Kind: "k"}
	if dead := record.DeadLettered(env, dl, tNow).Apply(st); dead.Runs != 3 {
		t.Fatalf("dead lettered: runs %d", dead.Runs)
	}
	next := *env
	next.Attempt = 2
	if st2 := record.Running(&next, record.Run{DequeueCount: 2}).Apply(ended); st2.Runs != 1 || st2.RunDequeueCount != 2 {
		t.Fatalf("attempt 2's first counted run: runs %d, last %d", st2.Runs, st2.RunDequeueCount)
	}
	if st2 := record.Running(&next, record.Run{}).Apply(ended); st2.Runs != 0 || st2.RunDequeueCount != 0 {
		t.Fatalf("attempt 2's first delivery: runs %d, last %d", st2.Runs, st2.RunDequeueCount)
	}
}

// TestCauseOf is the cause rule over the statuses a dead letter can meet.
func TestCauseOf(t *testing.T) {
	running := func(replay, attempt, runs int) *record.Status {
		return &record.Status{JobID: "j", State: record.StateRunning, Replay: replay, Attempt: attempt, Runs: runs}
	}
	const host = record.ReasonHostRetriesExhausted
	for _, c := range []struct {
		name    string
		reason  record.DeadReason
		st      *record.Status
		replay  int
		attempt int
		max     int
		want    record.DeadCause
	}{
		{"no status: never started", host, nil, 0, 1, 5, record.CauseCrash},
		{"queued, never started", host, &record.Status{State: record.StateQueued}, 0, 1, 5, record.CauseCrash},
		{"retrying the attempt before", host, &record.Status{State: record.StateRetrying, Attempt: 1}, 0, 2, 5, record.CauseCrash},
		{"running an earlier life", host, running(0, 1, 4), 1, 1, 5, record.CauseCrash},
		{"running, no redelivery ran", host, running(0, 1, 0), 0, 1, 5, record.CauseCrash},
		{"running, 3 of 4 redeliveries ran", host, running(0, 1, 3), 0, 1, 5, record.CauseCrash},
		{"every redelivery ran: a poison pill", host, running(0, 1, 4), 0, 1, 5, record.CauseJob},
		{"every redelivery ran, attempt 0 is 1", host, running(0, 1, 4), 0, 0, 5, record.CauseJob},
		{"every redelivery ran, later life and attempt", host, running(2, 3, 2), 2, 3, 3, record.CauseJob},
		{"maxDequeueCount 1: no redelivery to count", host, running(0, 1, 0), 0, 1, 1, record.CauseJob},
		{"maxDequeueCount 1, never started", host, nil, 0, 1, 1, record.CauseCrash},
		{"permanent error", record.ReasonPermanentError, nil, 0, 1, 5, record.CauseJob},
		{"attempts exhausted", record.ReasonAttemptsExhausted, running(0, 3, 0), 0, 3, 5, record.CauseJob},
		{"undecodable", record.ReasonUndecodable, nil, 0, 0, 5, record.CauseJob},
		{"unknown kind", record.ReasonUnknownKind, nil, 0, 1, 5, record.CauseJob},
	} {
		if got := record.CauseOf(c.reason, c.st, c.replay, c.attempt, c.max); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}
