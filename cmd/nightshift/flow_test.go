package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/nightshift-jobs/nightshift"
)

// `nightshift limits` shows NIGHTSHIFT_LIMITS and what a limited job left in storage: its
// kind's slot blob and the rate limit's next start, under the key's hash.
func TestLimitsCommand(t *testing.T) {
	e := newCLIEnv(t)
	t.Setenv(nightshift.SettingLimits, `{"cli.ok": {"concurrency": 2, "key_arg": "name", "rate": 5, "per": "1s"}}`)
	reg := nightshift.NewRegistry()
	nightshift.AddWorkerFunc(reg, func(ctx context.Context, job *nightshift.Job[okArgs]) (any, error) { return nil, nil },
		&nightshift.WorkerOptions{Limits: nightshift.Limits{Concurrency: 2, KeyArg: "name", Rate: 5}})
	e.h = nightshift.NewHandler(reg, e.store, &nightshift.HandlerOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if _, err := e.client.Enqueue(context.Background(), okArgs{Name: "acme"}, nil); err != nil {
		t.Fatal(err)
	}
	e.runJobs()
	out, stderr, code := e.run("", "limits", "--json")
	var rep limitsReport
	if code != 0 || json.Unmarshal([]byte(out), &rep) != nil {
		t.Fatalf("limits --json: %d %q %q", code, out, stderr)
	}
	if l := rep.Configured["cli.ok"]; l.Concurrency != 2 || l.Rate != 5 || l.KeyArg != "name" {
		t.Fatalf("configured %+v", rep.Configured)
	}
	if len(rep.State) != 1 || rep.State[0].Kind != "cli.ok" || rep.State[0].KeyHash != nightshift.LimitKeyHash("acme") ||
		rep.State[0].Slots != 1 || rep.State[0].NextStart.IsZero() {
		t.Fatalf("state %+v", rep.State)
	}
	out, _, code = e.run("", "limits")
	if code != 0 || !strings.Contains(out, "cli.ok") || !strings.Contains(out, "5 per 1s") || !strings.Contains(out, nightshift.LimitKeyHash("acme")) {
		t.Fatalf("limits: %d %q", code, out)
	}
	t.Setenv(nightshift.SettingLimits, `{"cli.ok": {"concurrency": -1}}`)
	if _, _, code := e.run("", "limits"); code != exitUsage {
		t.Fatalf("a bad setting exits %d, want %d", code, exitUsage)
	}
}

// pause, paused and resume change and show the pauses record (the holding itself is
// TestPauseHoldsAKindAndResumeRunsIt, in the root package).
func TestPauseResumeCommands(t *testing.T) {
	e := newCLIEnv(t)
	if out, _, code := e.run("", "pause", "--kind", "cli.ok"); code != 0 || !strings.Contains(out, "paused kind cli.ok") {
		t.Fatalf("pause: %d %q", code, out)
	}
	if out, _, code := e.run("", "pause", "--queue", "jobs-low"); code != 0 || !strings.Contains(out, "paused queue "+e.store.Layout.LowQueue()) {
		t.Fatalf("pause --queue: %d %q", code, out)
	}
	out, _, code := e.run("", "paused")
	if code != 0 || !strings.Contains(out, "cli.ok") || !strings.Contains(out, e.store.Layout.LowQueue()) {
		t.Fatalf("paused: %d %q", code, out)
	}
	if _, _, code := e.run("", "pause"); code != exitUsage {
		t.Fatalf("pause without a target exits %d", code)
	}
	for _, args := range [][]string{{"resume", "--kind", "cli.ok"}, {"resume", "--queue", "jobs-low"}} {
		if out, _, code := e.run("", args...); code != 0 || !strings.HasPrefix(out, "resumed ") {
			t.Fatalf("%v: %d %q", args, code, out)
		}
	}
	var p nightshift.Paused
	out, _, code = e.run("", "paused", "--json")
	if code != 0 || json.Unmarshal([]byte(out), &p) != nil || len(p.Kinds)+len(p.Queues) != 0 {
		t.Fatalf("paused --json after resume: %d %q", code, out)
	}
}
