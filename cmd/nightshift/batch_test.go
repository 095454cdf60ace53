package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/nightshift-jobs/nightshift"
)

func TestBatchCommand(t *testing.T) {
	e := newCLIEnv(t)
	ctx := context.Background()
	bi, err := e.client.StartBatch(ctx, nightshift.BatchParams{
		Children:  []nightshift.EnqueueParams{{Args: okArgs{Name: "a"}}, {Args: okArgs{Name: "b"}}, {Args: flakyArgs{}}},
		Finalizer: &nightshift.EnqueueParams{Args: okArgs{Name: "fin"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	out, _, code := e.run("", "batch", bi.BatchID, "--running")
	if code != 0 || !strings.Contains(out, "state:     running") || !strings.Contains(out, "pending:   3") || !strings.Contains(out, "running:   0") ||
		!strings.Contains(out, "(not enqueued yet)") {
		t.Fatalf("batch before running: %d %q", code, out)
	}
	e.runJobs()
	out, _, code = e.run("", "batch", bi.BatchID, "--children")
	if code != 0 || !strings.Contains(out, "state:     failed") || !strings.Contains(out, "succeeded: 2") || !strings.Contains(out, "failed:    1") ||
		!strings.Contains(out, bi.FinalizerJobID+" (succeeded)") || !strings.Contains(out, "first life fails") {
		t.Fatalf("batch after running: %d %q", code, out)
	}
	out, _, code = e.run("", "batch", bi.BatchID, "--json")
	var v nightshift.BatchStatus
	if code != 0 || json.Unmarshal([]byte(out), &v) != nil || v.Total != 3 || v.Failed != 1 {
		t.Fatalf("batch --json: %d %q", code, out)
	}
	if _, stderr, code := e.run("", "batch", "no-such-batch"); code != 1 || !strings.Contains(stderr, "not found") {
		t.Fatalf("missing batch: %d %q", code, stderr)
	}
	if _, _, code := e.run("", "batch"); code != 2 {
		t.Fatalf("no id: exit %d", code)
	}
}
