package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/envelope"
	"github.com/nightshift-jobs/nightshift/record"
)

func TestDeadListShowReplay(t *testing.T) {
	e := newCLIEnv(t)
	ctx := context.Background()
	const n = 3
	ids := map[string]bool{}
	for range n {
		res, err := e.client.Enqueue(ctx, flakyArgs{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		ids[res.JobID] = true
	}
	if _, err := e.client.Enqueue(ctx, okArgs{}, nil); err != nil {
		t.Fatal(err)
	}
	// Garbage on the jobs queue becomes an unreplayable dead letter.
	if _, err := e.store.Enqueue(ctx, e.store.Layout.JobsQueue(), []byte("not an envelope"), 0, 0); err != nil {
		t.Fatal(err)
	}
	e.runJobs()

	out, _, code := e.run("", "dead", "list")
	if code != 0 || !strings.HasPrefix(out, "DEAD ID") || strings.Count(out, "permanent_error") != n || !strings.Contains(out, "undecodable") {
		t.Fatalf("dead list: %d %q", code, out)
	}
	out, _, code = e.run("", "dead", "list", "--kind", "cli.flaky", "--reason", "permanent_error", "--since", "1h", "--json")
	var list []record.DeadLetter
	if code != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list) != n {
		t.Fatalf("dead list --json: %d %q", code, out)
	}
	out, _, code = e.run("", "dead", "list", "--reason", "permanent_error", "--scan", "--json")
	if code != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list) != n {
		t.Fatalf("dead list --scan --json: %d %q", code, out)
	}
	// Every record was written with its index tags: the reindex finds nothing to do.
	if out, _, code = e.run("", "dead", "reindex"); code != 0 || out != "4 dead-letter records, 0 given their index tags\n" {
		t.Fatalf("dead reindex: %d %q", code, out)
	}
	var one string
	for id := range ids {
		one = id
		break
	}
	out, _, code = e.run("", "dead", "show", one)
	if code != 0 || !strings.Contains(out, "reason:      permanent_error") || !strings.Contains(out, "attempt 1 at") || !strings.Contains(out, "[permanent]: permanent: first life fails") {
		t.Fatalf("dead show: %d %q", code, out)
	}
	out, _, code = e.run("", "dead", "show", one, "--json")
	var rec record.DeadLetter
	if code != 0 || json.Unmarshal([]byte(out), &rec) != nil || rec.JobID != one || rec.Envelope == nil || rec.Envelope.Kind != "cli.flaky" || len(rec.Errors) != 1 {
		t.Fatalf("dead show --json: %d %q", code, out)
	}
	if _, stderr, code := e.run("", "dead", "show", "nope"); code != exitFailure || !strings.Contains(stderr, "no dead letter nope") {
		t.Fatalf("dead show nope: %d %q", code, stderr)
	}

	// Dry run: lists, replays nothing.
	out, _, code = e.run("", "dead", "replay", "--kind", "cli.flaky", "--dry-run")
	if code != 0 || strings.Count(out, "would replay") != n || !strings.Contains(out, "as life 1") {
		t.Fatalf("dry run: %d %q", code, out)
	}
	if d, _ := e.client.QueueDepths(ctx); d[0].Messages != 0 {
		t.Fatalf("dry run enqueued %d messages", d[0].Messages)
	}

	// Replay with a rate cap of 4/s: n replays take at least (n-1)/4 s.
	const rate = 4.0
	start := time.Now()
	out, _, code = e.run("", "dead", "replay", "--kind", "cli.flaky", "--rate", "4", "--json")
	elapsed := time.Since(start)
	var outcomes []nightshift.DeadReplayOutcome
	if code != 0 || json.Unmarshal([]byte(out), &outcomes) != nil || len(outcomes) != n {
		t.Fatalf("replay: %d %q", code, out)
	}
	if floor := time.Duration(float64(n-1) / rate * float64(time.Second)); elapsed < floor {
		t.Errorf("%d replays at --rate %g took %s; the cap allows no less than %s", n, rate, elapsed, floor)
	}
	for _, o := range outcomes {
		if !ids[o.JobID] || o.Replay != 1 || o.Error != "" {
			t.Errorf("outcome %+v", o)
		}
	}
	e.runJobs()
	for id := range ids {
		st, err := e.client.Status(ctx, id)
		if err != nil || st.State != record.StateSucceeded || st.Replay != 1 {
			t.Fatalf("job %s after replay: %+v, %v", id, st, err)
		}
		d, _ := e.client.DeadLetter(ctx, id)
		if d.Replays != 1 {
			t.Errorf("dead letter %s replays = %d", id, d.Replays)
		}
	}
	if out, _, code = e.run("", "result", one); code != 0 || out != `{"life":1}` {
		t.Fatalf("result after replay: %d %q", code, out)
	}

	// The same filters again: the jobs are no longer dead, so nothing runs twice; the
	// undecodable record is skipped too.
	out, stderr, code := e.run("", "dead", "replay", "--all")
	if code != 0 || strings.Count(out, "skipped ") != n+1 || !strings.Contains(out, "job is succeeded (life 1), not dead") ||
		!strings.Contains(out, "not a valid job envelope") || !strings.Contains(stderr, "0 replayed, 4 skipped") {
		t.Fatalf("replay --all after the replays: %d %q %q", code, out, stderr)
	}
	if d, _ := e.client.QueueDepths(ctx); d[0].Messages != 0 {
		t.Fatalf("a skipped replay enqueued %d messages", d[0].Messages)
	}
	// By id, the same records are errors (exit 1).
	var garbage string
	all, _ := e.client.DeadLetters(ctx)
	for _, d := range all {
		if d.Reason == record.ReasonUndecodable {
			garbage = d.DeadID
		}
	}
	out, stderr, code = e.run("", "dead", "replay", one, garbage)
	if code != exitFailure || !strings.Contains(out, one+": job is succeeded (life 1), not dead") ||
		!strings.Contains(out, garbage+": not replayable") || !strings.Contains(stderr, "2 of 2 replay(s) failed") {
		t.Fatalf("replay by id: %d %q %q", code, out, stderr)
	}
	for _, args := range [][]string{{"dead", "replay"}, {"dead", "replay", one, "--kind", "x"}, {"dead", "replay", "--all", "--rate", "-1"}} {
		if _, stderr, code := e.run("", args...); code != exitUsage {
			t.Errorf("%v: %d %q, want 2", args, code, stderr)
		}
	}
	if _, _, code := e.run("", "dead", "replay", "no-such"); code != exitFailure {
		t.Errorf("replay of a missing id: %d", code)
	}
}

// TestDeadShowPrintsStacks: operators see a panic's stack in `dead show` (API callers
// never see it).
func TestDeadShowPrintsStacks(t *testing.T) {
	e := newCLIEnv(t)
	stack := "goroutine 9 [running]:\nmain.work()\n\t/src/app/worker.go:17 +0x1d"
	rec := &record.DeadLetter{DeadID: "panicky", JobID: "panicky", Kind: "cli.flaky", Reason: record.ReasonAttemptsExhausted, DiedAt: time.Now().UTC(),
		Errors: []envelope.AttemptError{{Attempt: 1, At: time.Now().UTC(), Error: "panic: boom", Class: "panic", Stack: stack}}}
	if _, err := e.store.PutDeadLetter(context.Background(), rec, ""); err != nil {
		t.Fatal(err)
	}
	out, _, code := e.run("", "dead", "show", "panicky")
	if code != 0 || !strings.Contains(out, "[panic]: panic: boom") || !strings.Contains(out, "    \t/src/app/worker.go:17") {
		t.Fatalf("dead show: %d %q", code, out)
	}
}
