package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/envelope"
	"github.com/nightshift-jobs/nightshift/internal/store"
	"github.com/nightshift-jobs/nightshift/internal/testenv"
	"github.com/nightshift-jobs/nightshift/record"
)

// stormVictimArgs is a healthy job whose deliveries a crash storm used up before any
// reached a handler (stormReaches).
type stormVictimArgs struct{}

func (stormVictimArgs) Kind() string { return "cli.storm" }

// stormPillArgs kills its handler process on every run.
type stormPillArgs struct{}

func (stormPillArgs) Kind() string { return "cli.pill" }

// stormReaches: no delivery of a cli.storm job reaches the handler; all others do.
func stormReaches(m store.Message) bool {
	env, err := envelope.Decode([]byte(m.Text))
	return err != nil || env.Kind != stormVictimArgs{}.Kind()
}

// stormHandler is the CLI env's handler with the crash-storm kinds added.
func stormHandler(e *cliEnv) {
	reg := nightshift.NewRegistry()
	nightshift.AddWorkerFunc(reg, func(ctx context.Context, j *nightshift.Job[stormVictimArgs]) (any, error) {
		return map[string]int{"life": j.Replay}, nil
	}, nil)
	nightshift.AddWorkerFunc(reg, func(ctx context.Context, j *nightshift.Job[stormPillArgs]) (any, error) {
		runtime.Goexit() // the process dies
		return nil, nil
	}, nil)
	nightshift.AddWorkerFunc(reg, func(ctx context.Context, job *nightshift.Job[flakyArgs]) (any, error) {
		if job.Replay == 0 {
			return nil, nightshift.Permanentf("first life fails")
		}
		return map[string]int{"life": job.Replay}, nil
	}, nil)
	e.h = nightshift.NewHandler(reg, e.store, &nightshift.HandlerOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), RunningAfter: time.Hour})
}

// TestDeadReplayCrashCaused: after a crash storm, `dead replay --reason
// host_retries_exhausted --cause crash --since 1h` replays the crash-caused dead letters
// only; they succeed, and the job-caused ones (a poison pill, a permanent error) stay
// dead with no replay counted.
func TestDeadReplayCrashCaused(t *testing.T) {
	e := newCLIEnv(t)
	stormHandler(e)
	ctx := context.Background()
	jobs := map[string]nightshift.JobArgs{"victim-1": stormVictimArgs{}, "victim-2": stormVictimArgs{}, "pill": stormPillArgs{}, "perm": flakyArgs{}}
	for id, args := range jobs {
		if _, err := e.client.Enqueue(ctx, args, &nightshift.EnqueueOptions{JobID: id}); err != nil {
			t.Fatal(err)
		}
	}
	testenv.CrashStorm(t, e.store, e.h, nightshift.FunctionRunJob, e.store.Layout.JobsQueue(), nightshift.DefaultMaxDequeueCount, stormReaches)
	e.runJobs()

	out, _, code := e.run("", "dead", "list", "--cause", "crash")
	if code != 0 || strings.Count(out, "victim-") != 2 || strings.Contains(out, "pill") || !strings.Contains(out, "CAUSE") {
		t.Fatalf("dead list --cause crash: %d %q", code, out)
	}
	out, _, code = e.run("", "dead", "show", "pill")
	if code != 0 || !strings.Contains(out, "reason:      host_retries_exhausted") || !strings.Contains(out, "cause:       job") {
		t.Fatalf("dead show pill: %d %q", code, out)
	}
	out, _, code = e.run("", "dead", "replay", "--reason", "host_retries_exhausted", "--cause", "crash", "--since", "1h", "--json")
	var outcomes []nightshift.DeadReplayOutcome
	if code != 0 || json.Unmarshal([]byte(out), &outcomes) != nil || len(outcomes) != 2 {
		t.Fatalf("replay --cause crash: %d %q", code, out)
	}
	for _, o := range outcomes {
		if !strings.HasPrefix(o.JobID, "victim-") || o.Replay != 1 || o.Error != "" || o.Skipped != "" {
			t.Errorf("outcome %+v", o)
		}
	}
	e.runJobs()
	for id := range jobs {
		st, err := e.client.Status(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		d, err := e.client.DeadLetter(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		victim := strings.HasPrefix(id, "victim-")
		switch {
		case victim && (st.State != record.StateSucceeded || st.Replay != 1 || d.Replays != 1 || d.Cause != record.CauseCrash):
			t.Errorf("%s after the replay: %s life %d, %d replays, cause %s", id, st.State, st.Replay, d.Replays, d.Cause)
		case !victim && (st.State != record.StateDead || st.Replay != 0 || d.Replays != 0 || d.Cause != record.CauseJob):
			t.Errorf("%s was touched: %s life %d, %d replays, cause %s", id, st.State, st.Replay, d.Replays, d.Cause)
		}
	}
	if _, stderr, code := e.run("", "dead", "replay", "--cause", "storm"); code != exitUsage || !strings.Contains(stderr, `--cause "storm" is neither crash nor job`) {
		t.Errorf("--cause storm: %d %q", code, stderr)
	}
}

// TestDeadReplayProgress: a group replay of more than 10 records reports its progress on
// standard error every 10 records and at the end; the outcomes stay on standard output.
func TestDeadReplayProgress(t *testing.T) {
	e := newCLIEnv(t)
	ctx := context.Background()
	const n = 12
	for i := range n {
		id := fmt.Sprintf("prog-%02d", i)
		env := &envelope.Envelope{JobID: id, Kind: "cli.ok", Args: json.RawMessage(`{}`), Attempt: 1}
		if _, err := e.store.PutDeadLetter(ctx, &record.DeadLetter{DeadID: id, JobID: id, Kind: "cli.ok", Reason: record.ReasonHostRetriesExhausted,
			Cause: record.CauseCrash, Envelope: env, DiedAt: time.Now().UTC()}, ""); err != nil {
			t.Fatal(err)
		}
	}
	out, stderr, code := e.run("", "dead", "replay", "--cause", "crash", "--dry-run")
	if code != 0 || strings.Count(out, "would replay prog-") != n {
		t.Fatalf("dry run: %d %q", code, out)
	}
	if !strings.Contains(stderr, "dead replay: 10 of 12 (0 replayed, 0 skipped, 0 failed)") || !strings.Contains(stderr, "dead replay: 12 of 12") {
		t.Fatalf("progress: %q", stderr)
	}
}

// TestDeadReplayMissingID: a missing id fails the command before anything is replayed,
// naming the id.
func TestDeadReplayMissingID(t *testing.T) {
	e := newCLIEnv(t)
	if _, stderr, code := e.run("", "dead", "replay", "no-such-id"); code != exitFailure || !strings.Contains(stderr, "dead letter no-such-id: ") || !strings.Contains(stderr, "not found") {
		t.Fatalf("replay of a missing id: %d %q", code, stderr)
	}
}
