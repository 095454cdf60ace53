package schedule_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/internal/testenv"
	"github.com/nightshift-jobs/nightshift/record"
	"github.com/nightshift-jobs/nightshift/schedule"
)

// The Go client routes delays beyond the queue's 7-day limit into the durable schedule.
func TestClientRoutesFarDelaysToTheSchedule(t *testing.T) {
	t.Parallel()
	store := testenv.Clients(t)
	ctx := context.Background()
	c := nightshift.NewClient(store, nil)
	due := time.Now().UTC().Add(30 * 24 * time.Hour).Truncate(time.Second)
	res, err := c.EnqueueRaw(ctx, "later", []byte(`{"x":1}`), &nightshift.EnqueueOptions{JobID: "far-1", RunAt: due})
	if err != nil {
		t.Fatal(err)
	}
	if res.MessageID != "" || !res.RunAt.Equal(due) {
		t.Errorf("result %+v, want no message and run_at %s", res, due)
	}
	depths, err := c.QueueDepths(ctx)
	if err != nil || depths[0].Messages != 0 {
		t.Errorf("queue depths %+v, %v: a far job must not be on the queue", depths, err)
	}
	entries, err := schedule.Scheduled(ctx, store)
	if err != nil || len(entries) != 1 || entries[0].JobID != "far-1" || !entries[0].Due.Equal(due) || string(entries[0].Envelope) == "" {
		t.Fatalf("schedule %+v, %v", entries, err)
	}
	st, err := c.Status(ctx, "far-1")
	if err != nil || st.State != record.StateQueued || !st.NextRunAt.Equal(due) {
		t.Errorf("status %+v, %v", st, err)
	}
	// A job id names one job, scheduled or not.
	if _, err := c.EnqueueRaw(ctx, "later", nil, &nightshift.EnqueueOptions{JobID: "far-1", RunIn: 40 * 24 * time.Hour}); !errors.Is(err, nightshift.ErrJobExists) {
		t.Errorf("second enqueue of far-1: %v, want ErrJobExists", err)
	}
	// Within 7 days it is an invisible queue message as before.
	near, err := c.EnqueueRaw(ctx, "later", nil, &nightshift.EnqueueOptions{RunIn: 6 * 24 * time.Hour})
	if err != nil || near.MessageID == "" {
		t.Errorf("6-day delay: %+v, %v", near, err)
	}
	removed, _, err := schedule.Cancel(ctx, c, "far-1")
	if err != nil || !removed {
		t.Errorf("Cancel = %v, %v", removed, err)
	}
}
