package nightshift_test

import (
	"context"
	"errors"
	"fmt"
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

// deadFixture is n dead-letter records written through PutDeadLetter (so with their
// index tags), one second apart: every 200th a permanent error of kind "mail.send" that
// crashes caused, the rest attempts exhausted of "csv.stats".
type deadFixture struct {
	clients *storage.Clients
	count   *storetest.Counting
	client  *nightshift.Client
	t0      time.Time
	records []*record.DeadLetter
}

func newDeadFixture(t testing.TB, c *storage.Clients, n, every int) *deadFixture {
	t.Helper()
	f := &deadFixture{clients: c, t0: time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)}
	t.Cleanup(func() { _ = c.Store().DeleteContainer(context.Background(), c.Layout.DeadLettersContainer()) })
	ctx := context.Background()
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for i := range n {
		d := &record.DeadLetter{DeadID: fmt.Sprintf("job-%06d", i), JobID: fmt.Sprintf("job-%06d", i), Kind: "csv.stats",
			Reason: record.ReasonAttemptsExhausted, Cause: record.CauseJob, Queue: c.Layout.JobsQueue(), Detail: "boom",
			DiedAt: f.t0.Add(time.Duration(i) * time.Second)}
		if i%every == every/2 {
			d.Kind, d.Reason, d.Cause = "mail.send", record.ReasonPermanentError, record.CauseCrash
		}
		f.records = append(f.records, d)
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if _, err := c.PutDeadLetter(ctx, d, ""); err != nil {
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

// want is what FindDeadLetters(sel) must return: the matching records, newest death first.
func (f *deadFixture) want(sel nightshift.DeadSelection) []string {
	var out []string
	for i := len(f.records) - 1; i >= 0; i-- {
		if sel.Matches(f.records[i]) {
			out = append(out, f.records[i].DeadID)
		}
	}
	return out
}

func deadIDs(ds []*record.DeadLetter) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.DeadID
	}
	return out
}

// TestDeadLettersIndexCostsMatches finds the permanent errors among 1,000 dead letters
// through the index and through the full scan, on Azurite and memory: the index's calls
// grow with the matches (one search page plus one read per match), the scan's with all
// records. A filtered group replay selects through the index too.
func TestDeadLettersIndexCostsMatches(t *testing.T) {
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			const n, every = 1000, 200
			f := newDeadFixture(t, b.Clients(t), n, every)
			ctx := context.Background()
			sel := nightshift.DeadSelection{Reason: record.ReasonPermanentError}
			want := f.want(sel)
			m := len(want)

			f.count.Reset()
			got, err := f.client.FindDeadLetters(ctx, sel)
			if err != nil || !slices.Equal(deadIDs(got), want) {
				t.Fatalf("FindDeadLetters(permanent) = %v, %v; want %v", deadIDs(got), err, want)
			}
			calls := f.count.Calls()
			const pages, slack = 1, 2
			if total := f.count.Total(); total > m+pages+slack || calls["Get"] != m || calls["List"] != 0 {
				t.Fatalf("FindDeadLetters through the index made %d calls %v; want at most %d matches + %d page + %d, no listing", total, calls, m, pages, slack)
			}
			indexed := f.count.Total()

			f.count.Reset()
			sel.Scan = true
			scanned, err := f.client.FindDeadLetters(ctx, sel)
			if err != nil || !slices.Equal(deadIDs(scanned), want) {
				t.Fatalf("FindDeadLetters(permanent, scan) = %v, %v; want %v", deadIDs(scanned), err, want)
			}
			if calls := f.count.Calls(); calls["Get"] != n || calls["FindByTags"] != 0 {
				t.Fatalf("the scan made %v; want a read of each of the %d records", calls, n)
			}
			scan := f.count.Total()

			// A filtered group replay (a dry run) selects through the index as well.
			f.count.Reset()
			rep, err := f.client.ReplayDead(ctx, nightshift.DeadSelection{Cause: record.CauseCrash}, &nightshift.ReplayDeadOptions{DryRun: true, Rate: -1})
			if err != nil || rep.Matched != m {
				t.Fatalf("ReplayDead(cause crash, dry run) = %+v, %v; want %d matched", rep, err, m)
			}
			if calls := f.count.Calls(); calls["List"] != 0 || calls["FindByTags"] == 0 {
				t.Fatalf("the replay's selection made %v; want the index, no listing", calls)
			}
			t.Logf("%s: %d dead letters, %d permanent errors: index %d calls, scan %d calls", b.Name, n, m, indexed, scan)
		})
	}
}

// TestDeadLettersIndexFilters checks every indexed filter against the scan.
func TestDeadLettersIndexFilters(t *testing.T) {
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			f := newDeadFixture(t, b.Clients(t), 60, 12)
			ctx := context.Background()
			for _, sel := range []nightshift.DeadSelection{
				{Kind: "mail.send"},
				{Kind: "csv.stats", Reason: record.ReasonAttemptsExhausted},
				{Cause: record.CauseCrash},
				{Cause: record.CauseJob, Since: f.t0.Add(30 * time.Second)},
				{Since: f.t0.Add(10*time.Second + 500*time.Millisecond)},
				{Reason: record.ReasonUndecodable},
				{Kind: "no.such.kind"},
			} {
				got, err := f.client.FindDeadLetters(ctx, sel)
				if err != nil {
					t.Fatalf("FindDeadLetters(%+v): %v", sel, err)
				}
				if want := f.want(sel); !slices.Equal(deadIDs(got), want) {
					t.Errorf("FindDeadLetters(%+v): index %v, want %v", sel, deadIDs(got), want)
				}
				sel.Scan = true
				scanned, err := f.client.FindDeadLetters(ctx, sel)
				if err != nil || !slices.Equal(deadIDs(scanned), deadIDs(got)) {
					t.Errorf("FindDeadLetters(%+v): scan %v (%v), index %v", sel, deadIDs(scanned), err, deadIDs(got))
				}
			}
		})
	}
}

// TestReindexDeadLetters: a record written without tags (before the index) is missing
// from filtered listings until ReindexDeadLetters gives it its tags; a second run
// rewrites nothing.
func TestReindexDeadLetters(t *testing.T) {
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			f := newDeadFixture(t, b.Clients(t), 10, 5)
			ctx := context.Background()
			c := f.clients
			if _, err := c.PutJSON(ctx, c.Layout.DeadLettersContainer(), record.DeadLetterBlob("old-1"),
				&record.DeadLetter{DeadID: "old-1", Kind: "mail.send", Reason: record.ReasonPermanentError, DiedAt: f.t0}, ""); err != nil {
				t.Fatal(err)
			}
			sel := nightshift.DeadSelection{Kind: "mail.send"}
			if got, _ := f.client.FindDeadLetters(ctx, sel); slices.Contains(deadIDs(got), "old-1") {
				t.Fatalf("an untagged record was found through the index: %v", deadIDs(got))
			}
			listed, rewrote, err := f.client.ReindexDeadLetters(ctx)
			if err != nil || listed != 11 || rewrote != 1 {
				t.Fatalf("ReindexDeadLetters = %d listed, %d rewrote, %v; want 11, 1", listed, rewrote, err)
			}
			got, err := f.client.FindDeadLetters(ctx, sel)
			if err != nil || !slices.Contains(deadIDs(got), "old-1") {
				t.Fatalf("after the reindex: %v, %v", deadIDs(got), err)
			}
			if _, rewrote, _ := f.client.ReindexDeadLetters(ctx); rewrote != 0 {
				t.Fatalf("a second reindex rewrote %d", rewrote)
			}
			_, props, err := c.Store().Get(ctx, c.Layout.DeadLettersContainer(), record.DeadLetterBlob("old-1"), 0)
			if err != nil || props.TagCount != len(storage.DeadTags(&record.DeadLetter{Kind: "k", Reason: "r"})) {
				t.Fatalf("old-1's tags: %d (%v)", props.TagCount, err)
			}
		})
	}
}
