package record_test

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nightshift-jobs/nightshift/envelope"
	"github.com/nightshift-jobs/nightshift/record"
)

var (
	tEnq   = time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)
	tStart = tEnq.Add(time.Minute)
	tEnd   = tStart.Add(1500 * time.Millisecond)
	tCur   = tEnq.Add(30 * time.Second) // the current record's times
	tNow   = tEnd.Add(time.Hour)
)

// transEnv is the envelope of attempt 2 of life 1 of job j1.
func transEnv() *envelope.Envelope {
	return &envelope.Envelope{
		JobID: "j1", Kind: "k", Attempt: 2, MaxAttempts: 5, Replay: 1, EnqueuedAt: tEnq,
		RunAt: tEnq.Add(time.Hour), Queue: "env-q", BatchID: "b1", Meta: map[string]string{"m": "env"},
		Errors: []envelope.AttemptError{{Attempt: 1, At: tEnq, Error: "first", Class: "retryable"}},
	}
}

// curRecord is a current record of job j1 with every field set.
func curRecord(state record.State, replay, attempt int) *record.Status {
	return &record.Status{
		JobID: "j1", Kind: "cur-kind", State: state, Replay: replay, Attempt: attempt, MaxAttempts: 9,
		Queue: "cur-q", EnqueuedAt: tCur, StartedAt: tCur.Add(time.Second), FinishedAt: tCur.Add(2 * time.Second),
		UpdatedAt: tCur.Add(3 * time.Second), NextRunAt: tCur.Add(4 * time.Second), DurationMS: 7,
		LastError: "cur-err", Errors: []envelope.AttemptError{{Attempt: 1, Error: "cur-err"}},
		Result:     &record.Result{ContentType: "application/json", Size: 2, JSON: json.RawMessage(`{}`)},
		DeadLetter: "cur-dead.json", Logs: []record.LogLine{{Time: tCur, Level: "INFO", Message: "cur-line"}},
		LogsDropped: 3, Meta: map[string]string{"m": "cur"},
		Callback: &record.CallbackOutcome{Target: "t", Event: "job.ended", Attempts: 1},
		Progress: &record.Progress{Fraction: 0.5, Message: "cur-progress", At: tCur},
		BatchID:  "cur-batch", Batch: &record.BatchSummary{BatchID: "child-batch", State: record.BatchRunning, Total: 2},
	}
}

var (
	newProgress = &record.Progress{Fraction: 0.75, Message: "new-progress", At: tEnd}
	newResult   = &record.Result{ContentType: "application/json", Size: 4, JSON: json.RawMessage(`true`)}
	newLines    = []record.LogLine{{Time: tEnd, Level: "INFO", Message: "new-line", Attempt: 2}}
	sum         = &record.BatchSummary{BatchID: "child-batch", State: record.BatchSucceeded, Total: 2, Succeeded: 2}
	outcome     = &record.CallbackOutcome{Target: "t", Event: "job.ended", Attempts: 2, Delivered: true}
)

func run(p *record.Progress) record.Run {
	return record.Run{MaxAttempts: 5, Queue: "q", StartedAt: tStart, Progress: p}
}

func end(state record.State) record.End {
	e := record.End{
		State: state, MaxAttempts: 5, Queue: "q", StartedAt: tStart, FinishedAt: tEnd,
		Errors: transEnv().Errors, Lines: newLines, Dropped: 1,
	}
	switch state {
	case record.StateSucceeded:
		e.Result = newResult
	case record.StateRetrying:
		e.LastError, e.NextRunAt = "second", tEnd.Add(time.Minute)
	case record.StateDead:
		e.LastError, e.DeadLetter = "second", "j1.json"
	}
	return e
}

// snoozeEnv is transEnv enqueued again after its first snooze.
func snoozeEnv() *envelope.Envelope {
	e := transEnv()
	e.Snoozes = 1
	return e
}

func snooze() record.Snooze {
	return record.Snooze{MaxAttempts: 5, Queue: "q", StartedAt: tStart, FinishedAt: tEnd, Due: tEnd.Add(time.Minute), Lines: newLines, Dropped: 1}
}

func deadLetter() *record.DeadLetter {
	return &record.DeadLetter{DeadID: "j1", JobID: "j1", Kind: "k", Queue: "dl-q", Reason: record.ReasonAttemptsExhausted}
}

// transitions are every transition, as written for attempt 2 of life 1 (transEnv).
func transitions() []struct {
	name string
	t    *record.Transition
} {
	return []struct {
		name string
		t    *record.Transition
	}{
		{"Queued", record.Queued(transEnv(), "q", tEnq.Add(time.Hour))},
		{"Replayed", record.Replayed(&envelope.Envelope{JobID: "j1", Kind: "k", Replay: 1, MaxAttempts: 5, EnqueuedAt: tEnq}, "q")},
		{"Running", record.Running(transEnv(), run(nil))},
		{"Running/progress", record.Running(transEnv(), run(newProgress))},
		{"Claimed", record.Claimed(transEnv(), run(nil), tNow)},
		{"Ended/succeeded", record.Ended(transEnv(), end(record.StateSucceeded))},
		{"Ended/retrying", record.Ended(transEnv(), end(record.StateRetrying))},
		{"Ended/dead", record.Ended(transEnv(), end(record.StateDead))},
		{"DeadLettered", record.DeadLettered(transEnv(), deadLetter(), tNow)},
		{"Snoozed", record.Snoozed(snoozeEnv(), snooze())},
		{"Cancelled", record.Cancelled("j1", tNow)},
		{"BatchSummarised", record.BatchSummarised(sum)},
		{"CallbackRecorded", record.CallbackRecorded(1, outcome)},
	}
}

// TestTransitionApplies checks, for every transition and every kind of current record,
// whether the transition applies. Records are named by state initial and (life,
// attempt): R12 is running at attempt 2 of life 1, the transitions' own attempt.
func TestTransitionApplies(t *testing.T) {
	cols := strings.Fields("nil Q10 Q12 R12 T12 S12 D12 C12 Q11 R11 T11 S11 D11 C11 Q13 R13 T13 S13 D02 S22")
	states := map[byte]record.State{
		'Q': record.StateQueued, 'R': record.StateRunning, 'T': record.StateRetrying,
		'S': record.StateSucceeded, 'D': record.StateDead, 'C': record.StateCancelled,
	}
	// y: applies. Groups: nil, Q10 | life 1 attempt 2 | attempt 1 | attempt 3 | life 0, life 2.
	want := map[string]string{
		"Queued":           "yn|nnnnnn|nnnnnn|nnnn|nn",
		"Replayed":         "yy|nnnnnn|nnnnnn|nnnn|yn",
		"Running":          "yy|yynnnn|yyynnn|nnnn|yn",
		"Running/progress": "yy|yynnnn|yyynnn|nnnn|yn",
		"Claimed":          "yy|yynnnn|yyynnn|nnnn|yn",
		"Ended/succeeded":  "yy|yyynnn|yyynnn|nnnn|yn",
		"Ended/retrying":   "yy|yyynnn|yyynnn|nnnn|yn",
		"Ended/dead":       "yy|yyynnn|yyynnn|nnnn|yn",
		"DeadLettered":     "yy|yyynnn|yyynnn|nnnn|yn",
		"Snoozed":          "yy|yynnnn|yyynnn|nnnn|yn",
		"Cancelled":        "yy|yyynnn|yyynnn|yyyn|nn",
		"BatchSummarised":  "ny|yyyyyy|yyyyyy|yyyy|yy",
		"CallbackRecorded": "ny|yyyyyy|yyyyyy|yyyy|nn",
	}
	for _, tr := range transitions() {
		w := strings.ReplaceAll(want[tr.name], "|", "")
		if len(w) != len(cols) {
			t.Fatalf("%s: want has %d columns, not %d", tr.name, len(w), len(cols))
		}
		for i, col := range cols {
			var cur *record.Status
			if col != "nil" {
				cur = curRecord(states[col[0]], int(col[1]-'0'), int(col[2]-'0'))
			}
			got := tr.t.Apply(cur) != nil
			if got != (w[i] == 'y') {
				t.Errorf("%s over %s: applies = %v, want %v", tr.name, col, got, !got)
			}
		}
	}
}

// TestTransitionFields checks every field of the record each transition writes over a
// current record with every field set: what it sets, keeps and drops.
func TestTransitionFields(t *testing.T) {
	env := transEnv()
	curLog := record.LogLine{Time: tCur, Level: "INFO", Message: "cur-line"}
	curErrs := []envelope.AttemptError{{Attempt: 1, Error: "cur-err"}}
	curProgress := &record.Progress{Fraction: 0.5, Message: "cur-progress", At: tCur}
	curBatch := &record.BatchSummary{BatchID: "child-batch", State: record.BatchRunning, Total: 2}
	meta := map[string]string{"m": "env"}
	running := func(p *record.Progress) record.Status {
		return record.Status{
			JobID: "j1", Kind: "k", State: record.StateRunning, Replay: 1, Attempt: 2, MaxAttempts: 5, Queue: "q",
			EnqueuedAt: tEnq, StartedAt: tStart, Errors: env.Errors, Meta: meta, BatchID: "b1",
			Logs: []record.LogLine{curLog}, LogsDropped: 3, Batch: curBatch, Progress: p,
		}
	}
	ended := func(state record.State) record.Status {
		return record.Status{
			JobID: "j1", Kind: "k", State: state, Replay: 1, Attempt: 2, MaxAttempts: 5, Queue: "q",
			EnqueuedAt: tEnq, StartedAt: tCur.Add(time.Second), FinishedAt: tEnd, DurationMS: 1500,
			Errors: env.Errors, Meta: meta, BatchID: "b1", Logs: []record.LogLine{curLog, newLines[0]}, LogsDropped: 4,
			Batch: curBatch, Progress: curProgress,
		}
	}
	succeeded := ended(record.StateSucceeded)
	succeeded.Result = newResult
	retrying := ended(record.StateRetrying)
	retrying.LastError, retrying.NextRunAt = "second", tEnd.Add(time.Minute)
	dead := ended(record.StateDead)
	dead.LastError, dead.DeadLetter = "second", "j1.json"
	claimed := running(nil)
	claimed.StartedAt, claimed.UpdatedAt, claimed.Batch = tNow, tNow, nil
	summarised := *curRecord(record.StateRunning, 1, 2)
	summarised.Batch = sum
	recorded := *curRecord(record.StateRunning, 1, 2)
	recorded.Callback = outcome

	cases := []struct {
		name string
		t    *record.Transition
		cur  *record.Status
		want *record.Status
	}{
		{"Queued/none", record.Queued(env, "q", tEnq.Add(time.Hour)), nil, &record.Status{
			JobID: "j1", Kind: "k", State: record.StateQueued, Replay: 1, MaxAttempts: 5, Queue: "q",
			EnqueuedAt: tEnq, NextRunAt: tEnq.Add(time.Hour), Meta: meta, BatchID: "b1",
		}},
		{"Replayed/over dead", record.Replayed(env, "q"), curRecord(record.StateDead, 0, 3), &record.Status{
			JobID: "j1", Kind: "k", State: record.StateQueued, Replay: 1, MaxAttempts: 5, Queue: "q",
			EnqueuedAt: tEnq, Meta: meta,
		}},
		{"Running/over queued", record.Running(env, run(nil)), curRecord(record.StateQueued, 1, 2), ptr(running(curProgress))},
		{"Running/over earlier attempt drops progress", record.Running(env, run(nil)), curRecord(record.StateRetrying, 1, 1), ptr(running(nil))},
		{"Running/progress", record.Running(env, run(newProgress)), curRecord(record.StateRunning, 1, 2), ptr(running(newProgress))},
		{"Claimed/keeps logs only", record.Claimed(env, run(newProgress), tNow), curRecord(record.StateRunning, 1, 2), ptr(func() record.Status {
			s := claimed
			s.Progress = newProgress
			return s
		}())},
		{"Claimed/over queued", record.Claimed(env, run(nil), tNow), curRecord(record.StateQueued, 1, 2), &claimed},
		{"Ended/succeeded over running", record.Ended(env, end(record.StateSucceeded)), curRecord(record.StateRunning, 1, 2), &succeeded},
		{"Ended/retrying over running", record.Ended(env, end(record.StateRetrying)), curRecord(record.StateRunning, 1, 2), &retrying},
		{"Ended/dead over running", record.Ended(env, end(record.StateDead)), curRecord(record.StateRunning, 1, 2), &dead},
		{"Ended/over queued keeps own start", record.Ended(env, end(record.StateSucceeded)), curRecord(record.StateQueued, 1, 2), ptr(func() record.Status {
			s := succeeded
			s.StartedAt = tStart
			return s
		}())},
		{"Ended/over earlier attempt", record.Ended(env, end(record.StateSucceeded)), curRecord(record.StateRunning, 1, 1), ptr(func() record.Status {
			s := succeeded
			s.StartedAt, s.Progress = tStart, nil
			return s
		}())},
		{"Ended/none", record.Ended(env, end(record.StateSucceeded)), nil, ptr(func() record.Status {
			s := succeeded
			s.StartedAt, s.Progress, s.Batch, s.Logs, s.LogsDropped = tStart, nil, nil, newLines, 1
			return s
		}())},
		{"DeadLettered/over running", record.DeadLettered(env, deadLetter(), tNow), curRecord(record.StateRunning, 1, 1), &record.Status{
			JobID: "j1", Kind: "k", State: record.StateDead, Replay: 1, Attempt: 2, MaxAttempts: 9, Queue: "dl-q",
			EnqueuedAt: tEnq, StartedAt: tCur.Add(time.Second), FinishedAt: tNow, Errors: env.Errors, LastError: "first",
			DeadLetter: "j1.json", Meta: meta, BatchID: "b1", Logs: []record.LogLine{curLog}, LogsDropped: 3,
			Batch: curBatch, Progress: curProgress,
		}},
		{"DeadLettered/none, attempt 0", record.DeadLettered(&envelope.Envelope{JobID: "j1", Kind: "k"}, deadLetter(), tNow), nil, &record.Status{
			JobID: "j1", Kind: "k", State: record.StateDead, Attempt: 1, Queue: "dl-q", FinishedAt: tNow, DeadLetter: "j1.json",
		}},
		{"Snoozed/over running", record.Snoozed(snoozeEnv(), snooze()), curRecord(record.StateRunning, 1, 2), &record.Status{
			JobID: "j1", Kind: "k", State: record.StateQueued, Replay: 1, Attempt: 2, MaxAttempts: 5, Queue: "q",
			EnqueuedAt: tEnq, StartedAt: tStart, FinishedAt: tEnd, DurationMS: 1500, NextRunAt: tEnd.Add(time.Minute),
			Errors: env.Errors, Meta: meta, BatchID: "b1", Logs: []record.LogLine{curLog, newLines[0]}, LogsDropped: 4,
			Batch: curBatch, Snoozes: 1,
		}},
		{"Snoozed/an earlier snooze does not move the count back", record.Snoozed(snoozeEnv(), snooze()), func() *record.Status {
			s := curRecord(record.StateQueued, 1, 2)
			s.Snoozes = 2
			return s
		}(), nil},
		{"Snoozed/a redelivered snooze writes nothing again", record.Snoozed(snoozeEnv(), snooze()), func() *record.Status {
			s := curRecord(record.StateQueued, 1, 2)
			s.Snoozes = 1
			return s
		}(), nil},
		{"Running/keeps the envelope's snoozes", record.Running(snoozeEnv(), run(nil)), func() *record.Status {
			s := curRecord(record.StateQueued, 1, 2)
			s.Snoozes = 1
			return s
		}(), ptr(func() record.Status {
			s := running(curProgress)
			s.Snoozes = 1
			return s
		}())},
		{"Cancelled/keeps the snoozes", record.Cancelled("j1", tNow), func() *record.Status {
			s := curRecord(record.StateQueued, 1, 2)
			s.Snoozes = 3
			return s
		}(), &record.Status{
			JobID: "j1", Kind: "cur-kind", State: record.StateCancelled, Replay: 1, Attempt: 3, MaxAttempts: 9, Queue: "cur-q",
			EnqueuedAt: tCur, StartedAt: tCur.Add(time.Second), FinishedAt: tNow, Errors: curErrs, LastError: "cur-err",
			Logs: []record.LogLine{curLog}, LogsDropped: 3, Meta: map[string]string{"m": "cur"}, Snoozes: 3,
		}},
		{"Cancelled/running names its attempt", record.Cancelled("j1", tNow), curRecord(record.StateRunning, 1, 2), &record.Status{
			JobID: "j1", Kind: "cur-kind", State: record.StateCancelled, Replay: 1, Attempt: 2, MaxAttempts: 9, Queue: "cur-q",
			EnqueuedAt: tCur, StartedAt: tCur.Add(time.Second), FinishedAt: tNow, Errors: curErrs, LastError: "cur-err",
			Logs: []record.LogLine{curLog}, LogsDropped: 3, Meta: map[string]string{"m": "cur"},
		}},
		{"Cancelled/retrying names the next", record.Cancelled("j1", tNow), curRecord(record.StateRetrying, 1, 2), &record.Status{
			JobID: "j1", Kind: "cur-kind", State: record.StateCancelled, Replay: 1, Attempt: 3, MaxAttempts: 9, Queue: "cur-q",
			EnqueuedAt: tCur, StartedAt: tCur.Add(time.Second), FinishedAt: tNow, Errors: curErrs, LastError: "cur-err",
			Logs: []record.LogLine{curLog}, LogsDropped: 3, Meta: map[string]string{"m": "cur"},
		}},
		{"Cancelled/queued at attempt 0", record.Cancelled("j1", tNow), curRecord(record.StateQueued, 0, 0), &record.Status{
			JobID: "j1", Kind: "cur-kind", State: record.StateCancelled, Attempt: 1, MaxAttempts: 9, Queue: "cur-q",
			EnqueuedAt: tCur, StartedAt: tCur.Add(time.Second), FinishedAt: tNow, Errors: curErrs, LastError: "cur-err",
			Logs: []record.LogLine{curLog}, LogsDropped: 3, Meta: map[string]string{"m": "cur"},
		}},
		{"Cancelled/none", record.Cancelled("j1", tNow), nil, &record.Status{
			JobID: "j1", State: record.StateCancelled, Attempt: 1, FinishedAt: tNow,
		}},
		{"BatchSummarised/changes only the summary", record.BatchSummarised(sum), curRecord(record.StateRunning, 1, 2), &summarised},
		{"BatchSummarised/final summary stays", record.BatchSummarised(sum), func() *record.Status {
			s := curRecord(record.StateSucceeded, 1, 2)
			s.Batch = &record.BatchSummary{BatchID: "child-batch", State: record.BatchFailed, Total: 2, Failed: 1}
			return s
		}(), nil},
		{"BatchSummarised/another batch's final summary", record.BatchSummarised(sum), func() *record.Status {
			s := curRecord(record.StateRunning, 1, 2)
			s.Batch = &record.BatchSummary{BatchID: "old", State: record.BatchFailed}
			return s
		}(), ptr(summarised)},
		{"CallbackRecorded/changes only the callback", record.CallbackRecorded(1, outcome), curRecord(record.StateRunning, 1, 2), &recorded},
		{"CallbackRecorded/first success stays", record.CallbackRecorded(1, outcome), func() *record.Status {
			s := curRecord(record.StateSucceeded, 1, 2)
			s.Callback = &record.CallbackOutcome{Target: "t", Event: "job.ended", Attempts: 1, Delivered: true}
			return s
		}(), nil},
		{"CallbackRecorded/other event", record.CallbackRecorded(1, outcome), func() *record.Status {
			s := curRecord(record.StateRunning, 1, 2)
			s.Callback = &record.CallbackOutcome{Target: "t", Event: "job.started", Delivered: true}
			return s
		}(), ptr(recorded)},
		{"CallbackRecorded/other life", record.CallbackRecorded(0, outcome), curRecord(record.StateRunning, 1, 2), nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var before *record.Status
			if c.cur != nil {
				b := *c.cur
				b.Logs = append([]record.LogLine(nil), c.cur.Logs...)
				before = &b
			}
			got := c.t.Apply(c.cur)
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("Apply:\n got %s\nwant %s", show(t, got), show(t, c.want))
			}
			if c.cur != nil && !reflect.DeepEqual(c.cur, before) {
				t.Errorf("Apply changed the current record:\n got %s\nwant %s", show(t, c.cur), show(t, before))
			}
		})
	}
}

// TestTransitionProposed checks that Proposed is the transition's facts alone (what a
// job-end callback receives) and that each call and each Apply return a new record.
func TestTransitionProposed(t *testing.T) {
	tr := record.Ended(transEnv(), end(record.StateSucceeded))
	p := tr.Proposed()
	if p.Logs != nil || p.LogsDropped != 0 || p.Batch != nil || p.State != record.StateSucceeded || p.Result != newResult || p.DurationMS != 1500 {
		t.Errorf("Proposed = %s", show(t, p))
	}
	p.State = record.StateDead
	if tr.Proposed().State != record.StateSucceeded {
		t.Error("changing a proposed record changed the transition")
	}
	cur := curRecord(record.StateRunning, 1, 2)
	a, b := tr.Apply(cur), tr.Apply(cur)
	if a == b || &a.Logs[0] == &b.Logs[0] || &a.Logs[0] == &cur.Logs[0] {
		t.Error("Apply returned records that share memory")
	}
	if len(a.Logs) != 2 || a.LogsDropped != 4 || len(b.Logs) != 2 || b.LogsDropped != 4 {
		t.Errorf("a second Apply appended twice: %s", show(t, b))
	}
}

// TestEndedKeepsNewestLogs checks that an attempt's lines join the current logs within
// MaxLogLines, counting the lines that give way.
func TestEndedKeepsNewestLogs(t *testing.T) {
	cur := curRecord(record.StateRunning, 1, 2)
	cur.Logs = make([]record.LogLine, record.MaxLogLines)
	e := end(record.StateSucceeded)
	e.Lines = []record.LogLine{{Message: "a"}, {Message: "b"}}
	got := record.Ended(transEnv(), e).Apply(cur)
	if len(got.Logs) != record.MaxLogLines || got.Logs[len(got.Logs)-1].Message != "b" || got.LogsDropped != 3+2+1 {
		t.Errorf("logs: %d lines, last %q, dropped %d", len(got.Logs), got.Logs[len(got.Logs)-1].Message, got.LogsDropped)
	}
}

// A transition records the args it is given (up to MaxShownArgs) and otherwise keeps the
// current record's: a dead-letter or cancel after an end still shows them.
func TestTransitionArgs(t *testing.T) {
	cur := curRecord(record.StateRunning, 1, 2)
	if got := record.Ended(transEnv(), end(record.StateSucceeded)).WithArgs(json.RawMessage(`{"a":1}`)).Apply(cur); string(got.Args) != `{"a":1}` {
		t.Errorf("WithArgs: args %s", got.Args)
	}
	cur.Args = json.RawMessage(`{"old":true}`)
	if got := record.DeadLettered(transEnv(), deadLetter(), tNow).Apply(cur); string(got.Args) != `{"old":true}` {
		t.Errorf("without WithArgs: args %s, want the current record's", got.Args)
	}
	big := json.RawMessage(`"` + strings.Repeat("x", record.MaxShownArgs) + `"`)
	if got := record.Ended(transEnv(), end(record.StateSucceeded)).WithArgs(big).Apply(cur); string(got.Args) != `{"old":true}` {
		t.Errorf("args over MaxShownArgs: recorded %d bytes", len(got.Args))
	}
}

func ptr(s record.Status) *record.Status { return &s }

func show(t *testing.T, s *record.Status) string {
	t.Helper()
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
