package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/record"
)

func TestStatusWaitResultLogs(t *testing.T) {
	e := newCLIEnv(t)
	ctx := context.Background()
	res, err := e.client.Enqueue(ctx, okArgs{Name: "Bo"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	id := res.JobID
	out, _, code := e.run("", "status", id)
	if code != 0 || !strings.Contains(out, "state:       queued") || !strings.Contains(out, "kind:        cli.ok") {
		t.Fatalf("status: %d %q", code, out)
	}
	// Nobody runs the job: wait times out with exit code 4, with plain progress lines
	// on a non-terminal stderr.
	out, stderr, code := e.run("", "wait", id, "--timeout", "300ms")
	if code != exitWaitTimedOut || out != "" || !strings.Contains(stderr, "job "+id+": queued") || !strings.Contains(stderr, "did not end within 300ms") {
		t.Fatalf("wait --timeout: %d, out %q, stderr %q", code, out, stderr)
	}
	if strings.Contains(stderr, "\r") {
		t.Errorf("progress on a non-terminal used carriage returns: %q", stderr)
	}
	e.runJobs()
	out, stderr, code = e.run("", "wait", id)
	if code != 0 || !strings.Contains(out, "state:       succeeded") || !strings.Contains(stderr, "succeeded") {
		t.Fatalf("wait: %d, out %q, stderr %q", code, out, stderr)
	}
	out, _, code = e.run("", "wait", id, "--json", "-q")
	var st record.Status
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil || st.State != record.StateSucceeded {
		t.Fatalf("wait --json: %d %q", code, out)
	}
	out, _, code = e.run("", "status", id, "--json")
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil || st.JobID != id || st.Result == nil {
		t.Fatalf("status --json: %d %q", code, out)
	}
	out, _, code = e.run("", "result", id)
	if code != 0 || out != `{"hello":"Bo"}` {
		t.Fatalf("result: %d %q", code, out)
	}
	file := filepath.Join(t.TempDir(), "out.json")
	if _, stderr, code = e.run("", "result", id, "--out", file); code != 0 || !strings.Contains(stderr, "wrote 14 bytes") {
		t.Fatalf("result --out: %d %q", code, stderr)
	}
	if b, _ := os.ReadFile(file); string(b) != `{"hello":"Bo"}` {
		t.Fatalf("result file = %q", b)
	}
	out, _, code = e.run("", "result", id, "--json")
	var rj struct {
		ContentType string `json:"content_type"`
		JSON        map[string]string
	}
	if code != 0 || json.Unmarshal([]byte(out), &rj) != nil || rj.JSON["hello"] != "Bo" || rj.ContentType != "application/json" {
		t.Fatalf("result --json: %d %q", code, out)
	}
	out, _, code = e.run("", "logs", id)
	if code != 0 || !strings.Contains(out, "INFO  attempt 1  hello name=Bo") {
		t.Fatalf("logs: %d %q", code, out)
	}
	out, _, code = e.run("", "logs", id, "--json")
	var lj struct {
		Logs []record.LogLine
	}
	if code != 0 || json.Unmarshal([]byte(out), &lj) != nil || len(lj.Logs) != 1 {
		t.Fatalf("logs --json: %d %q", code, out)
	}
	for _, cmd := range [][]string{{"status", "nope"}, {"result", "nope"}, {"logs", "nope"}} {
		if _, stderr, code := e.run("", cmd...); code != exitFailure || !strings.Contains(stderr, "no job nope") {
			t.Errorf("%v: %d %q", cmd, code, stderr)
		}
	}

	// Cancelled: exit code 3. Dead: exit code 1.
	c, _ := e.client.Enqueue(ctx, okArgs{}, &nightshift.EnqueueOptions{RunIn: 3600e9})
	if _, err := e.client.Cancel(ctx, c.JobID); err != nil {
		t.Fatal(err)
	}
	if _, stderr, code := e.run("", "wait", c.JobID); code != exitWaitCancelled || !strings.Contains(stderr, "was cancelled") {
		t.Errorf("wait on a cancelled job: %d %q", code, stderr)
	}
	if _, stderr, code := e.run("", "result", c.JobID); code != exitFailure || !strings.Contains(stderr, "is cancelled") {
		t.Errorf("result of a cancelled job: %d %q", code, stderr)
	}
	d, _ := e.client.Enqueue(ctx, flakyArgs{}, nil)
	e.runJobs()
	if out, stderr, code := e.run("", "wait", d.JobID); code != exitWaitDead || !strings.Contains(stderr, "is dead: permanent: first life fails") || !strings.Contains(out, "dead letter:") {
		t.Errorf("wait on a dead job: %d %q %q", code, out, stderr)
	}
}

func TestJobsAndQueues(t *testing.T) {
	e := newCLIEnv(t)
	ctx := context.Background()
	for _, n := range []string{"a", "b"} {
		if _, err := e.client.Enqueue(ctx, okArgs{Name: n}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.client.Enqueue(ctx, flakyArgs{}, nil); err != nil {
		t.Fatal(err)
	}
	out, _, code := e.run("", "queues")
	if code != 0 || !strings.Contains(out, "QUEUE") || !strings.Contains(out, e.store.Layout.JobsQueue()+"  ") {
		t.Fatalf("queues: %d %q", code, out)
	}
	out, _, code = e.run("", "queues", "--json")
	var depths []nightshift.QueueDepth
	if code != 0 || json.Unmarshal([]byte(out), &depths) != nil || len(depths) != 3 || depths[0].Messages != 3 || depths[0].PoisonMsgs != 0 {
		t.Fatalf("queues --json: %d %q", code, out)
	}
	e.runJobs()
	out, _, code = e.run("", "jobs")
	if code != 0 || !strings.HasPrefix(out, "JOB ") || strings.Count(out, "\n") != 4 || !strings.Contains(out, "permanent: first life fails") {
		t.Fatalf("jobs: %d %q", code, out)
	}
	out, _, code = e.run("", "jobs", "--state", "succeeded", "--kind", "cli.ok", "--since", "1h", "--json")
	var list []record.Status
	if code != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list) != 2 || list[0].Logs != nil {
		t.Fatalf("jobs --state succeeded --json: %d %q", code, out)
	}
	if out, _, code = e.run("", "jobs", "--state", "dead", "--limit", "1", "--json"); code != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list) != 1 || list[0].Kind != "cli.flaky" {
		t.Fatalf("jobs --state dead: %d %q", code, out)
	}
	if out, _, code = e.run("", "jobs", "--since", "2030-01-01T00:00:00Z"); code != 0 || out != "no jobs\n" {
		t.Fatalf("jobs --since future: %d %q", code, out)
	}
	for _, args := range [][]string{{"jobs", "--state", "done"}, {"jobs", "--since", "yesterday"}, {"jobs", "--limit", "0"}, {"queues", "extra"}} {
		if _, stderr, code := e.run("", args...); code != exitUsage {
			t.Errorf("%v: %d %q, want exit 2", args, code, stderr)
		}
	}
	out, _, code = e.run("", "queues", "--json")
	if code != 0 || json.Unmarshal([]byte(out), &depths) != nil || depths[0].Messages != 0 {
		t.Fatalf("queues after the run: %d %q", code, out)
	}
}

func TestWaitProgressRendering(t *testing.T) {
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	st := &record.Status{JobID: "j1", State: record.StateRetrying, Attempt: 2, MaxAttempts: 5, NextRunAt: start.Add(time.Minute)}

	var tty bytes.Buffer
	p := &progress{w: &tty, tty: true, id: "j1", start: start, plainEvery: 10 * time.Second}
	p.update(nil, start.Add(time.Second))
	p.update(st, start.Add(3*time.Second))
	p.done()
	want := "\r\033[K/ job j1: no status yet (1s)" +
		"\r\033[K- job j1: retrying, attempt 2 of 5, next run 2026-01-02T03:05:05Z (3s)" +
		"\r\033[K"
	if tty.String() != want {
		t.Errorf("terminal progress = %q\nwant %q", tty.String(), want)
	}

	var plain bytes.Buffer
	p = &progress{w: &plain, id: "j1", start: start, plainEvery: 10 * time.Second}
	p.update(st, start.Add(time.Second))
	p.update(st, start.Add(2*time.Second))  // unchanged, too soon: nothing
	p.update(st, start.Add(12*time.Second)) // unchanged, but 10 s passed: a line
	st2 := *st
	st2.State, st2.NextRunAt = record.StateRunning, time.Time{}
	p.update(&st2, start.Add(13*time.Second)) // changed: a line
	st2.Progress = &record.Progress{Fraction: 0.4, Message: "40 of 100 files"}
	p.update(&st2, start.Add(14*time.Second)) // progress changed: a line
	p.done()
	lines := strings.Split(strings.TrimSuffix(plain.String(), "\n"), "\n")
	if len(lines) != 4 || lines[2] != "job j1: running, attempt 2 of 5 (13s elapsed)" ||
		lines[3] != "job j1: running, attempt 2 of 5, 40% (40 of 100 files) (14s elapsed)" || strings.Contains(plain.String(), "\r") {
		t.Errorf("plain progress = %q", plain.String())
	}
	if isTerminal(&plain) {
		t.Error("a buffer is not a terminal")
	}
}
