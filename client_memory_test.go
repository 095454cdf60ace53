package nightshift_test

import (
	"context"
	"testing"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/internal/testenv"
)

// TestListJobsAndQueueDepthsOnMemory checks that the client's listing and queue counts
// go through the storage boundary: on the in-memory driver (no SDK clients) ListJobs
// finds the enqueued jobs, newest first, and QueueDepths counts their messages and marks
// a queue that does not exist as missing.
func TestListJobsAndQueueDepthsOnMemory(t *testing.T) {
	t.Parallel()
	store := testenv.Memory(t)
	missing := store.Layout.Name("absent")
	c := nightshift.NewClient(store, &nightshift.ClientOptions{ExtraQueues: []string{missing}})
	ctx := context.Background()
	first, err := c.Enqueue(ctx, memSumArgs{A: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	second, err := c.Enqueue(ctx, memSumArgs{A: 2}, nil)
	if err != nil {
		t.Fatal(err)
	}
	jobs, err := c.ListJobs(ctx, nightshift.JobFilter{Kind: memSumArgs{}.Kind()})
	if err != nil || len(jobs) != 2 {
		t.Fatalf("ListJobs = %d jobs, %v; want 2", len(jobs), err)
	}
	if ids := map[string]bool{jobs[0].JobID: true, jobs[1].JobID: true}; !ids[first.JobID] || !ids[second.JobID] {
		t.Fatalf("ListJobs = %s, %s; want %s and %s", jobs[0].JobID, jobs[1].JobID, first.JobID, second.JobID)
	}
	if none, err := c.ListJobs(ctx, nightshift.JobFilter{Kind: "no.such.kind"}); err != nil || len(none) != 0 {
		t.Fatalf("ListJobs of another kind = %d jobs, %v; want none", len(none), err)
	}
	d, err := c.QueueDepths(ctx)
	if err != nil || len(d) != 4 {
		t.Fatalf("QueueDepths = %+v, %v; want 4 queues", d, err)
	}
	if d[0].Queue != store.Layout.JobsQueue() || d[0].Messages != 2 || d[0].PoisonMsgs != 0 || d[0].QueueMissing {
		t.Errorf("jobs queue depth = %+v, want 2 messages", d[0])
	}
	if d[3].Queue != missing || !d[3].QueueMissing || d[3].Messages != 0 {
		t.Errorf("missing queue depth = %+v, want it marked missing", d[3])
	}
}
