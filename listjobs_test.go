package nightshift_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/internal/store/storetest"
	"github.com/nightshift-jobs/nightshift/internal/testenv"
	"github.com/nightshift-jobs/nightshift/record"
	"github.com/nightshift-jobs/nightshift/storage"
)

// indexFixture is n status records written through PutStatus (so with their index
// tags), one second apart: every 400th dead (kind "mail.send", queue jobs-high, batch
// "b1"), the rest succeeded.
type indexFixture struct {
	clients *storage.Clients
	count   *storetest.Counting
	client  *nightshift.Client
	t0      time.Time
	dead    []string // newest first
	records []*record.Status
}

// want is what ListJobs(jf) must return through the index: the matching records by
// UpdatedAt, newest first, at most jf.Limit (default 50). The scan orders by the blobs'
// modification times instead (the same order when UpdatedAt is the write time, as in a
// real app; here the fixture's UpdatedAt are a second apart and the writes are not).
func (f *indexFixture) want(jf nightshift.JobFilter) []string {
	var out []*record.Status
	for _, st := range f.records {
		if (jf.State == "" || st.State == jf.State) && (jf.Kind == "" || st.Kind == jf.Kind) &&
			(jf.Queue == "" || st.Queue == jf.Queue) && (jf.Batch == "" || st.BatchID == jf.Batch) &&
			(jf.Since.IsZero() || !st.UpdatedAt.Before(jf.Since)) && (jf.Until.IsZero() || st.UpdatedAt.Before(jf.Until)) {
			out = append(out, st)
		}
	}
	slices.SortFunc(out, func(a, b *record.Status) int { return b.UpdatedAt.Compare(a.UpdatedAt) })
	limit := jf.Limit
	if limit <= 0 {
		limit = 50
	}
	return ids(out[:min(limit, len(out))])
}

// sameSet reports whether a and b hold the same ids, in any order.
func sameSet(a, b []string) bool {
	return slices.Equal(slices.Sorted(slices.Values(a)), slices.Sorted(slices.Values(b)))
}

func newIndexFixture(t testing.TB, c *storage.Clients, n, every int) *indexFixture {
	t.Helper()
	f := &indexFixture{clients: c, t0: time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)}
	t.Cleanup(func() { _ = c.Store().DeleteContainer(context.Background(), c.Layout.StatusContainer()) })
	ctx := context.Background()
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for i := range n {
		st := &record.Status{JobID: fmt.Sprintf("job-%06d", i), Kind: "csv.stats", Queue: c.Layout.JobsQueue(),
			State: record.StateSucceeded, Attempt: 1, EnqueuedAt: f.t0, UpdatedAt: f.t0.Add(time.Duration(i) * time.Second)}
		if i%every == every/2 {
			st.State, st.Kind, st.Queue, st.BatchID = record.StateDead, "mail.send", c.Layout.HighQueue(), "b1"
			f.dead = append([]string{st.JobID}, f.dead...)
		}
		f.records = append(f.records, st)
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if _, err := c.PutStatus(ctx, st, ""); err != nil {
				mu.Lock()
				firstErr = errors.Join(firstErr, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		t.Fatal(firstErr)
	}
	f.count = storetest.NewCounting(c.Store())
	f.client = nightshift.NewClient(c.WithStore(f.count), nil)
	return f
}

func ids(sts []*record.Status) []string {
	out := make([]string, len(sts))
	for i, st := range sts {
		out[i] = st.JobID
	}
	return out
}

// TestListJobsIndexCostsMatches lists the dead among 2,000 records through the index
// and through the full scan, on Azurite and memory, and bounds the storage calls each
// makes: the index's grow with the matches (one search page plus one read per match),
// the scan's with all records.
func TestListJobsIndexCostsMatches(t *testing.T) {
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			const n, every = 2000, 400
			f := newIndexFixture(t, b.Clients(t), n, every)
			ctx := context.Background()
			m := len(f.dead)

			f.count.Reset()
			got, err := f.client.ListJobs(ctx, nightshift.JobFilter{State: record.StateDead})
			if err != nil || !slices.Equal(ids(got), f.dead) {
				t.Fatalf("ListJobs(dead) = %v, %v; want %v", ids(got), err, f.dead)
			}
			calls := f.count.Calls()
			const pages, slack = 1, 2
			if total := f.count.Total(); total > m+pages+slack || calls["Get"] != m || calls["List"] != 0 {
				t.Fatalf("ListJobs(dead) through the index made %d calls %v; want at most %d matches + %d page + %d, no listing", total, calls, m, pages, slack)
			}
			indexed := f.count.Total()

			f.count.Reset()
			scanned, err := f.client.ListJobs(ctx, nightshift.JobFilter{State: record.StateDead, Scan: true})
			if err != nil || !sameSet(ids(scanned), f.dead) {
				t.Fatalf("ListJobs(dead, scan) = %v, %v; want %v", ids(scanned), err, f.dead)
			}
			if calls := f.count.Calls(); calls["Get"] != n || calls["FindByTags"] != 0 {
				t.Fatalf("the scan made %v; want a read of each of the %d records", calls, n)
			}
			t.Logf("%s: %d records, %d dead: index %d calls, scan %d calls", b.Name, n, m, indexed, f.count.Total())
		})
	}
}

// TestListJobsIndexFilters checks every indexed filter against the scan, paging with a
// cursor, and a bad cursor.
func TestListJobsIndexFilters(t *testing.T) {
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			f := newIndexFixture(t, b.Clients(t), 60, 12)
			ctx := context.Background()
			l := f.clients.Layout
			for _, jf := range []nightshift.JobFilter{
				{State: record.StateDead},
				{Kind: "mail.send"},
				{Kind: "csv.stats", Limit: 7},
				{Queue: l.HighQueue()},
				{Batch: "b1", State: record.StateDead},
				{Since: f.t0.Add(30 * time.Second)},
				{Since: f.t0.Add(10 * time.Second), Until: f.t0.Add(20 * time.Second)},
				{Until: f.t0.Add(5*time.Second + 500*time.Millisecond)},
				{State: record.StateSucceeded, Since: f.t0.Add(50 * time.Second), Limit: 100},
				{Kind: "no.such.kind"},
				{Kind: "mail.send", Limit: math.MaxInt}, // chunks past a non-match do not overflow
			} {
				got, err := f.client.ListJobs(ctx, jf)
				if err != nil {
					t.Fatalf("ListJobs(%+v): %v", jf, err)
				}
				want := f.want(jf)
				if !slices.Equal(ids(got), want) {
					t.Errorf("ListJobs(%+v): index %v, want %v", jf, ids(got), want)
				}
				jf.Scan = true
				scanned, err := f.client.ListJobs(ctx, jf)
				if err != nil {
					t.Fatal(err)
				}
				// Without a binding limit the scan finds the same jobs (in its own order).
				unlimited := jf
				unlimited.Limit = math.MaxInt
				if len(f.want(unlimited)) == len(want) && !sameSet(ids(scanned), want) {
					t.Errorf("ListJobs(%+v): scan %v, want %v in any order", jf, ids(scanned), want)
				}
			}
			if got, _ := f.client.ListJobs(ctx, nightshift.JobFilter{Until: f.t0.Add(2 * time.Second)}); !slices.Equal(ids(got), []string{"job-000001", "job-000000"}) {
				t.Errorf("Until is exclusive: %v", ids(got))
			}

			for _, scan := range []bool{false, true} {
				var all []string
				jf := nightshift.JobFilter{Kind: "csv.stats", Limit: 20, Scan: scan}
				for pages := 0; ; pages++ {
					if pages > 5 {
						t.Fatal("paging does not end")
					}
					p, err := f.client.JobsPage(ctx, jf)
					if err != nil {
						t.Fatal(err)
					}
					all = append(all, ids(p.Jobs)...)
					if p.Next == "" {
						break
					}
					jf.Cursor = p.Next
				}
				want := f.want(nightshift.JobFilter{Kind: "csv.stats", Limit: 1000})
				if scan { // the scan pages in its own order: the listing's in one page
					whole, _ := f.client.ListJobs(ctx, nightshift.JobFilter{Kind: "csv.stats", Limit: 1000, Scan: true})
					want = ids(whole)
				}
				if len(all) != 55 || !slices.Equal(all, want) {
					t.Errorf("paged (scan %v): %d jobs %v, want the 55 newest first %v", scan, len(all), all, want)
				}
			}
			if _, err := f.client.JobsPage(ctx, nightshift.JobFilter{Cursor: "not-a-cursor"}); !errors.Is(err, nightshift.ErrBadCursor) {
				t.Errorf("a bad cursor gave %v", err)
			}
		})
	}
}
