package delayed_test

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/nightshift-jobs/nightshift/envelope"
	"github.com/nightshift-jobs/nightshift/internal/delayed"
	"github.com/nightshift-jobs/nightshift/internal/store"
	"github.com/nightshift-jobs/nightshift/internal/testenv"
	"github.com/nightshift-jobs/nightshift/record"
	"github.com/nightshift-jobs/nightshift/storage"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

func newEnv(id string, due time.Time) *envelope.Envelope {
	return &envelope.Envelope{Version: 1, JobID: id, Kind: "test.kind", Args: []byte(`{"n":1}`), Attempt: 1,
		EnqueuedAt: time.Now().UTC(), RunAt: due}
}

// forBackends runs test once per storage backend (Azurite and memory), in parallel, each
// with fresh clients on their own prefix.
func forBackends(t *testing.T, test func(t *testing.T, c *storage.Clients)) {
	t.Helper()
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			test(t, b.Clients(t))
		})
	}
}

// visibleIDs returns the job ids of the queue's visible messages, sorted.
func visibleIDs(t *testing.T, c *storage.Clients, queue string) []string {
	t.Helper()
	msgs, err := c.Store().Peek(context.Background(), queue, store.MaxReceive)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range msgs {
		env, err := envelope.Decode([]byte(m.Text))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, env.JobID)
	}
	sort.Strings(ids)
	return ids
}

func approxCount(t *testing.T, c *storage.Clients, queue string) int {
	t.Helper()
	n, err := c.Store().Count(context.Background(), queue)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestPutListFindRemove(t *testing.T) {
	t.Parallel()
	forBackends(t, func(t *testing.T, c *storage.Clients) {
		ctx := context.Background()
		now := time.Now().UTC()
		s := delayed.New(c, nil)
		q := c.Layout.JobsQueue()
		far, farther := now.Add(30*24*time.Hour), now.Add(60*24*time.Hour)
		if _, err := s.Put(ctx, newEnv("job-b", farther), q); err != nil {
			t.Fatal(err)
		}
		e, err := s.Put(ctx, newEnv("job-a", far), q)
		if err != nil {
			t.Fatal(err)
		}
		if e.Blob != delayed.BlobName(far, "job-a") {
			t.Errorf("blob %q", e.Blob)
		}
		// The job has a queued status with its due time.
		st, _, err := c.GetStatus(ctx, "job-a")
		if err != nil || st.State != record.StateQueued || !st.NextRunAt.Equal(far.Truncate(time.Nanosecond)) {
			t.Errorf("status %+v, %v", st, err)
		}
		// A job id names one job.
		if _, err := s.Put(ctx, newEnv("job-a", far.Add(time.Hour)), q); !errors.Is(err, delayed.ErrJobExists) {
			t.Errorf("second Put of job-a = %v, want ErrJobExists", err)
		}
		list, err := s.List(ctx, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != 2 || list[0].JobID != "job-a" || list[1].JobID != "job-b" {
			t.Fatalf("List = %+v, want job-a then job-b", list)
		}
		if list, _ := s.List(ctx, far.Add(time.Hour)); len(list) != 1 {
			t.Errorf("List(until after job-a) = %d entries, want 1", len(list))
		}
		if e, err := s.Find(ctx, "job-b"); err != nil || e == nil || !e.Due.Equal(farther) {
			t.Errorf("Find(job-b) = %+v, %v", e, err)
		}
		removed, err := s.Remove(ctx, "job-b")
		if err != nil || !removed {
			t.Errorf("Remove(job-b) = %v, %v", removed, err)
		}
		if removed, _ := s.Remove(ctx, "job-b"); removed {
			t.Error("second Remove(job-b) reported a removal")
		}
		if e, _ := s.Find(ctx, "job-b"); e != nil {
			t.Error("job-b still scheduled")
		}
	})
}

func TestSweepMovesOnlyDueEntriesInvisibleUntilDue(t *testing.T) {
	t.Parallel()
	forBackends(t, func(t *testing.T, c *storage.Clients) {
		ctx := context.Background()
		real := time.Now().UTC()
		clk := &clock{t: real}
		s := delayed.New(c, &delayed.Options{Now: clk.Now})
		q := c.Layout.JobsQueue()
		// Due in 10 and 20 days of the test clock.
		if _, err := s.Put(ctx, newEnv("soon", real.Add(10*24*time.Hour)), q); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Put(ctx, newEnv("later", real.Add(20*24*time.Hour)), q); err != nil {
			t.Fatal(err)
		}
		// Nothing is due now.
		res, err := s.Sweep(ctx, time.Minute)
		if err != nil || res.Moved != 0 {
			t.Fatalf("sweep now = %+v, %v", res, err)
		}
		// 10 days on, "soon" is due: moved and visible at once; "later" stays.
		clk.Set(real.Add(10*24*time.Hour + time.Second))
		res, err = s.Sweep(ctx, time.Minute)
		if err != nil || res.Moved != 1 || res.JobIDs[0] != "soon" {
			t.Fatalf("sweep at +10d = %+v, %v", res, err)
		}
		if got := visibleIDs(t, c, q); len(got) != 1 || got[0] != "soon" {
			t.Errorf("visible messages %v, want [soon]", got)
		}
		if e, _ := s.Find(ctx, "soon"); e != nil {
			t.Error("moved entry still in the schedule")
		}
		// 30 s before "later" is due, a sweep with a 1-minute look-ahead moves it invisible.
		clk.Set(real.Add(20*24*time.Hour - 30*time.Second))
		res, err = s.Sweep(ctx, time.Minute)
		if err != nil || res.Moved != 1 || res.JobIDs[0] != "later" {
			t.Fatalf("sweep 30 s before later = %+v, %v", res, err)
		}
		if got := visibleIDs(t, c, q); len(got) != 1 {
			t.Errorf("visible messages %v: the early move must stay invisible until due", got)
		}
		if n := approxCount(t, c, q); n != 2 {
			t.Errorf("queue holds %d messages, want 2", n)
		}
	})
}

func TestSweepDropsCancelledJobs(t *testing.T) {
	t.Parallel()
	forBackends(t, func(t *testing.T, c *storage.Clients) {
		ctx := context.Background()
		real := time.Now().UTC()
		clk := &clock{t: real}
		s := delayed.New(c, &delayed.Options{Now: clk.Now})
		q := c.Layout.JobsQueue()
		if _, err := s.Put(ctx, newEnv("doomed", real.Add(9*24*time.Hour)), q); err != nil {
			t.Fatal(err)
		}
		// Cancelled through its status only (as Client.Cancel does), entry left in place.
		_, _, err := c.UpdateStatus(ctx, "doomed", func(cur *record.Status) *record.Status {
			next := *cur
			next.State = record.StateCancelled
			return &next
		})
		if err != nil {
			t.Fatal(err)
		}
		clk.Set(real.Add(10 * 24 * time.Hour))
		res, err := s.Sweep(ctx, time.Minute)
		if err != nil || res.Dropped != 1 || res.Moved != 0 {
			t.Fatalf("sweep = %+v, %v", res, err)
		}
		if n := approxCount(t, c, q); n != 0 {
			t.Errorf("queue holds %d messages, want 0", n)
		}
		if e, _ := s.Find(ctx, "doomed"); e != nil {
			t.Error("dropped entry still in the schedule")
		}
	})
}

func TestConcurrentSweepersMoveEachJobOnce(t *testing.T) {
	t.Parallel()
	forBackends(t, func(t *testing.T, c *storage.Clients) {
		ctx := context.Background()
		real := time.Now().UTC()
		clk := &clock{t: real}
		q := c.Layout.JobsQueue()
		const n = 20
		put := delayed.New(c, nil)
		for i := 0; i < n; i++ {
			if _, err := put.Put(ctx, newEnv(fmt.Sprintf("job-%02d", i), real.Add(8*24*time.Hour+time.Duration(i)*time.Second)), q); err != nil {
				t.Fatal(err)
			}
		}
		clk.Set(real.Add(9 * 24 * time.Hour))
		var wg sync.WaitGroup
		results := make([]delayed.SweepResult, 3)
		for i := range results {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res, err := delayed.New(c, &delayed.Options{Now: clk.Now}).Sweep(ctx, time.Minute)
				if err != nil {
					t.Error(err)
				}
				results[i] = res
			}()
		}
		wg.Wait()
		moved := 0
		for _, r := range results {
			moved += r.Moved
		}
		t.Logf("sweeper results: %+v %+v %+v", results[0], results[1], results[2])
		if moved != n {
			t.Errorf("sweepers moved %d entries in all, want %d", moved, n)
		}
		if got := approxCount(t, c, q); got != n {
			t.Errorf("queue holds %d messages, want %d (one per job)", got, n)
		}
		seen := map[string]int{}
		for {
			msgs, err := c.Store().Receive(ctx, q, store.MaxReceive, 0)
			if err != nil {
				t.Fatal(err)
			}
			if len(msgs) == 0 {
				break
			}
			for _, m := range msgs {
				env, _ := envelope.Decode([]byte(m.Text))
				seen[env.JobID]++
			}
		}
		for i := 0; i < n; i++ {
			if id := fmt.Sprintf("job-%02d", i); seen[id] != 1 {
				t.Errorf("%s enqueued %d times", id, seen[id])
			}
		}
		if left, _ := put.List(ctx, time.Time{}); len(left) != 0 {
			t.Errorf("%d entries left in the schedule", len(left))
		}
	})
}

func TestRacingPutsOfOneJobIDLeaveOneEntry(t *testing.T) {
	t.Parallel()
	forBackends(t, func(t *testing.T, c *storage.Clients) {
		ctx := context.Background()
		now := time.Now().UTC()
		s := delayed.New(c, nil)
		var wg sync.WaitGroup
		errs := make([]error, 6)
		for i := range errs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = s.Put(ctx, newEnv("contested", now.Add(time.Duration(10+i)*24*time.Hour)), c.Layout.JobsQueue())
			}()
		}
		wg.Wait()
		ok := 0
		for _, err := range errs {
			switch {
			case err == nil:
				ok++
			case !errors.Is(err, delayed.ErrJobExists):
				t.Errorf("Put: %v", err)
			}
		}
		list, err := s.List(ctx, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		if ok != 1 || len(list) != 1 {
			t.Errorf("%d Puts succeeded and %d entries remain, want 1 and 1", ok, len(list))
		}
	})
}
