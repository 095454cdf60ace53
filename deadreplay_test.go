package nightshift

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nightshift-jobs/nightshift/envelope"
	"github.com/nightshift-jobs/nightshift/internal/testenv"
	"github.com/nightshift-jobs/nightshift/record"
)

// TestReplayDeadCrashCaused: one group replay of the crash-caused dead letters brings
// those jobs back and they succeed; the job-caused ones stay dead, their replay count
// unchanged. The replay goes in steps of one (a limit and its continuation).
func TestReplayDeadCrashCaused(t *testing.T) {
	e := newStormEnv(t, testenv.Clients(t))
	e.storm(stormJobs("r-"))
	ctx := context.Background()
	sel := DeadSelection{Reason: record.ReasonHostRetriesExhausted, Cause: record.CauseCrash, Since: time.Now().Add(-time.Hour)}
	var replayed []string
	after := ""
	for step := 0; ; step++ {
		rep, err := e.client.ReplayDead(ctx, sel, &ReplayDeadOptions{Limit: 1, After: after, Rate: -1})
		if err != nil {
			t.Fatal(err)
		}
		if rep.Taken != 1 || rep.Replayed != 1 || rep.Matched != 2-step || rep.Remaining != 1-step {
			t.Fatalf("step %d: %+v", step, rep)
		}
		replayed = append(replayed, rep.Outcomes[0].JobID)
		if rep.Next == "" {
			break
		}
		after = rep.Next
	}
	slices.Sort(replayed)
	if !slices.Equal(replayed, []string{"r-never", "r-partial"}) {
		t.Fatalf("replayed %v", replayed)
	}
	testenv.Drain(t, e.store, e.h, e.store.Layout.JobsQueue(), FunctionRunJob, FunctionRunDeadLetter)
	for name := range wantCauses {
		st, err := e.client.Status(ctx, "r-"+name)
		if err != nil {
			t.Fatal(err)
		}
		d, _ := e.client.DeadLetter(ctx, "r-"+name)
		crash := wantCauses[name][1] == string(record.CauseCrash)
		switch {
		case crash && (st.State != record.StateSucceeded || st.Replay != 1 || d.Replays != 1):
			t.Errorf("%s after the replay: %s life %d, %d replays", name, st.State, st.Replay, d.Replays)
		case !crash && (st.State != record.StateDead || st.Replay != 0 || d.Replays != 0):
			t.Errorf("%s was touched: %s life %d, %d replays", name, st.State, st.Replay, d.Replays)
		}
	}
	// Again: nothing is dead any more in the selection, so nothing runs twice.
	rep, err := e.client.ReplayDead(ctx, sel, nil)
	if err != nil || rep.Replayed != 0 || rep.Skipped != 2 {
		t.Fatalf("second group replay: %+v, %v", rep, err)
	}
}

// TestReplayDeadRateCap counts the waits the rate cap asks for on a clock that moves
// only when it waits: n replays at rate r wait n-1 times 1/r; skipped records and dry
// runs wait for nothing.
func TestReplayDeadRateCap(t *testing.T) {
	store := testenv.Memory(t)
	ctx := context.Background()
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := NewClient(store, &ClientOptions{Now: func() time.Time { return clock }})
	const n = 6
	for i := range n {
		id := "rate-" + string(rune('a'+i))
		env := &envelope.Envelope{Version: envelope.Version, JobID: id, Kind: "k", Args: json.RawMessage(`{}`), Attempt: 1}
		if _, err := store.PutDeadLetter(ctx, &record.DeadLetter{DeadID: id, JobID: id, Kind: "k", Reason: record.ReasonHostRetriesExhausted,
			Cause: record.CauseCrash, Envelope: env, Queue: store.Layout.JobsQueue(), DiedAt: clock.Add(time.Duration(i) * time.Second)}, ""); err != nil {
			t.Fatal(err)
		}
	}
	// A record of another cause is not selected, and one whose job is not dead is skipped.
	if _, err := store.PutDeadLetter(ctx, &record.DeadLetter{DeadID: "other", JobID: "other", Kind: "k", Reason: record.ReasonHostRetriesExhausted,
		Cause: record.CauseJob, Envelope: &envelope.Envelope{JobID: "other", Kind: "k"}, DiedAt: clock}, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := store.PutStatus(ctx, &record.Status{JobID: "rate-c", State: record.StateSucceeded, Replay: 1}, ""); err != nil {
		t.Fatal(err)
	}
	var waits []time.Duration
	sleep := func(ctx context.Context, d time.Duration) error {
		waits = append(waits, d)
		clock = clock.Add(d)
		return nil
	}
	var progress []DeadReplayProgress
	sel := DeadSelection{Cause: record.CauseCrash}
	dry, err := c.ReplayDead(ctx, sel, &ReplayDeadOptions{Rate: 4, DryRun: true, sleep: sleep})
	if err != nil || len(waits) != 0 || dry.Taken != n || dry.Skipped != 1 || dry.Replayed != 0 {
		t.Fatalf("dry run: %+v, %v, waits %v", dry, err, waits)
	}
	rep, err := c.ReplayDead(ctx, sel, &ReplayDeadOptions{Rate: 4, sleep: sleep, Progress: func(p DeadReplayProgress) { progress = append(progress, p) }})
	if err != nil || rep.Replayed != n-1 || rep.Skipped != 1 || rep.Matched != n {
		t.Fatalf("replay: %+v, %v", rep, err)
	}
	want := slices.Repeat([]time.Duration{250 * time.Millisecond}, n-2)
	if !slices.Equal(waits, want) {
		t.Fatalf("waits %v, want %v", waits, want)
	}
	if last := progress[len(progress)-1]; len(progress) != n || last.Last.DeadID != "rate-f" || last.Last.Replay != 1 ||
		(DeadReplayProgress{Done: last.Done, Total: last.Total, Replayed: last.Replayed, Skipped: last.Skipped}) != (DeadReplayProgress{Done: n, Total: n, Replayed: n - 1, Skipped: 1}) {
		t.Fatalf("progress %+v", progress)
	}
	// The default cap is DefaultReplayRate; a negative rate has none.
	waits = nil
	p := c.newPacer(&ReplayDeadOptions{sleep: sleep})
	for range 3 {
		_ = p.wait(ctx)
	}
	if !slices.Equal(waits, []time.Duration{100 * time.Millisecond, 100 * time.Millisecond}) {
		t.Fatalf("default cap waits %v", waits)
	}
	waits = nil
	p = c.newPacer(&ReplayDeadOptions{Rate: -1, sleep: sleep})
	for range 3 {
		_ = p.wait(ctx)
	}
	if len(waits) != 0 {
		t.Fatalf("no cap waited %v", waits)
	}
}

// TestReplayDeadBadInput: a bad continuation and ids mixed with filters are refused
// before anything is read or replayed.
func TestReplayDeadBadInput(t *testing.T) {
	c := NewClient(testenv.Memory(t), nil)
	ctx := context.Background()
	good := encodeContinuation(&deadPos{DiedAt: time.Now(), DeadID: "x"})
	for _, after := range []string{"x", "dr1.", "dr1.!!", "dr1." + strings.Repeat("A", 2000), good[:len(good)-3], "dr1.e30"} {
		if _, err := c.ReplayDead(ctx, DeadSelection{Kind: "k"}, &ReplayDeadOptions{After: after}); !errors.Is(err, ErrBadContinuation) {
			t.Errorf("after %q: %v", after, err)
		}
	}
	if _, err := c.ReplayDead(ctx, DeadSelection{Kind: "k"}, &ReplayDeadOptions{After: good}); err != nil {
		t.Errorf("a good continuation: %v", err)
	}
	if _, err := c.ReplayDead(ctx, DeadSelection{DeadIDs: []string{"a"}, Kind: "k"}, nil); err == nil {
		t.Error("ids with filters were accepted")
	}
}

// TestPacer: calls are spaced at the rate; a cancelled context ends a wait.
func TestPacer(t *testing.T) {
	p := &pacer{rate: 50, now: time.Now, sleep: sleepCtx}
	start := time.Now()
	for range 6 {
		if err := p.wait(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Fatalf("6 calls at 50/s took %s, want at least 100ms", d)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	slow := &pacer{rate: 0.001, now: time.Now, sleep: sleepCtx}
	_ = slow.wait(ctx) // the first call goes at once
	if err := slow.wait(ctx); err == nil {
		t.Fatal("wait with a cancelled context returned nil")
	}
}
