package storage_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nightshift-jobs/nightshift/internal/store"
	"github.com/nightshift-jobs/nightshift/internal/testenv"
	"github.com/nightshift-jobs/nightshift/record"
	"github.com/nightshift-jobs/nightshift/storage"
)

func TestTagValue(t *testing.T) {
	for in, want := range map[string]string{
		"mail.send":      "mail.send",
		"csv:stats_v2-x": "csv:stats_v2-x",
		"a=b":            "a=3Db",
		"é@'":            "=C3=A9=40=27",
	} {
		if got := storage.TagValue(in); got != want {
			t.Errorf("TagValue(%q) = %q, want %q", in, got, want)
		}
		if store.ValidTags(map[string]string{"k": storage.TagValue(in)}) != nil {
			t.Errorf("TagValue(%q) is not a valid tag value", in)
		}
	}
	long := strings.Repeat("@", 100)
	if got := storage.TagValue(long); len(got) > store.MaxTagValue || !strings.HasPrefix(got, "=h") || got == storage.TagValue(long+"@") {
		t.Errorf("TagValue of a long value = %q", got)
	}
	if got := storage.TagTime(time.Date(2026, 12, 3, 13, 7, 12, 900, time.FixedZone("x", 3600))); got != "2026-12-03T12:07:12Z" {
		t.Errorf("TagTime = %q", got)
	}
}

func findIDs(t *testing.T, c *storage.Clients, q storage.StatusQuery) []string {
	t.Helper()
	var ids []string
	for it, err := range c.FindStatuses(context.Background(), q) {
		if err != nil {
			t.Fatalf("FindStatuses(%+v): %v", q, err)
		}
		ids = append(ids, it.JobID)
	}
	return ids
}

// Status writes carry their index tags; the index follows every transition and race.
func TestStatusIndex(t *testing.T) {
	forBackends(t, func(t *testing.T, c *storage.Clients) {
		ctx := context.Background()
		t0 := time.Date(2026, 12, 3, 13, 0, 0, 0, time.UTC)
		put := func(id, kind, queue, batch string, state record.State, at time.Time) {
			t.Helper()
			st := &record.Status{JobID: id, Kind: kind, Queue: queue, BatchID: batch, State: state, UpdatedAt: at, EnqueuedAt: t0}
			if _, err := c.PutStatus(ctx, st, ""); err != nil {
				t.Fatal(err)
			}
		}
		put("j1", "mail.send", "jobs", "", record.StateDead, t0.Add(time.Minute))
		put("j2", "mail.send", "jobs-high", "b1", record.StateSucceeded, t0.Add(2*time.Minute))
		put("j3", "csv.stats", "jobs", "b1", record.StateDead, t0.Add(3*time.Minute))
		for _, tc := range []struct {
			q    storage.StatusQuery
			want []string
		}{
			{storage.StatusQuery{State: record.StateDead}, []string{"j1", "j3"}},
			{storage.StatusQuery{Kind: "mail.send"}, []string{"j1", "j2"}},
			{storage.StatusQuery{Queue: "jobs-high"}, []string{"j2"}},
			{storage.StatusQuery{Batch: "b1", State: record.StateDead}, []string{"j3"}},
			{storage.StatusQuery{Since: t0.Add(2 * time.Minute)}, []string{"j2", "j3"}},
			{storage.StatusQuery{Since: t0.Add(90 * time.Second), Until: t0.Add(150 * time.Second)}, []string{"j2"}},
			{storage.StatusQuery{}, []string{"j1", "j2", "j3"}},
		} {
			if got := findIDs(t, c, tc.q); !slices.Equal(got, tc.want) {
				t.Errorf("FindStatuses(%+v) = %v, want %v", tc.q, got, tc.want)
			}
		}
		// A transition moves the record in the index; concurrent writers leave the
		// winner's tags.
		var wg sync.WaitGroup
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, _, err := c.UpdateStatus(ctx, "j1", func(cur *record.Status) *record.Status {
					next := *cur
					next.State, next.Replay = record.StateQueued, cur.Replay+1
					return &next
				})
				if err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		st, _, _ := c.GetStatus(ctx, "j1")
		if got := findIDs(t, c, storage.StatusQuery{State: record.StateDead}); !slices.Equal(got, []string{"j3"}) || st.Replay != 4 {
			t.Fatalf("after the replays: dead = %v, replay %d", got, st.Replay)
		}
		if got := findIDs(t, c, storage.StatusQuery{State: record.StateQueued}); !slices.Equal(got, []string{"j1"}) {
			t.Fatalf("after the replays: queued = %v", got)
		}
	})
}

// A record written before the index is found after ReindexStatus, and only then.
func TestReindexStatus(t *testing.T) {
	forBackends(t, func(t *testing.T, c *storage.Clients) {
		ctx := context.Background()
		old := &record.Status{JobID: "old", Kind: "k", State: record.StateDead, UpdatedAt: time.Now().UTC()}
		if _, err := c.PutJSON(ctx, c.Layout.StatusContainer(), storage.StatusBlob("old"), old, ""); err != nil {
			t.Fatal(err)
		}
		if got := findIDs(t, c, storage.StatusQuery{State: record.StateDead}); len(got) != 0 {
			t.Fatalf("an untagged record was found: %v", got)
		}
		before, _, _ := c.GetStatus(ctx, "old")
		for i, want := range []bool{true, false} {
			wrote, err := c.ReindexStatus(ctx, "old")
			if err != nil || wrote != want {
				t.Fatalf("ReindexStatus #%d = %v, %v; want %v", i+1, wrote, err, want)
			}
		}
		if got := findIDs(t, c, storage.StatusQuery{State: record.StateDead, Kind: "k"}); !slices.Equal(got, []string{"old"}) {
			t.Fatalf("after reindexing: %v", got)
		}
		after, _, _ := c.GetStatus(ctx, "old")
		if after.JobID != before.JobID || after.State != before.State || !after.UpdatedAt.Equal(before.UpdatedAt) {
			t.Fatalf("reindexing changed the record: %+v -> %+v", before, after)
		}
		if wrote, err := c.ReindexStatus(ctx, "missing"); wrote || err != nil {
			t.Fatalf("ReindexStatus of a missing record = %v, %v", wrote, err)
		}
		tags := storage.StatusTags(after)
		if !maps.Equal(tags, map[string]string{"ix": "1", "state": "dead", "kind": "k", "updated": storage.TagTime(after.UpdatedAt)}) {
			t.Fatalf("StatusTags = %v", tags)
		}
	})
}

// forbidTags refuses every write with index tags, like a credential without the
// index-tag permission.
type forbidTags struct {
	store.Store
	tagged, plain int
}

func (f *forbidTags) Put(ctx context.Context, c, n string, data []byte, opts store.PutOptions) (store.ETag, error) {
	if opts.Tags != nil {
		f.tagged++
		return "", fmt.Errorf("write %s/%s: %w", c, n, store.ErrForbidden)
	}
	f.plain++
	return f.Store.Put(ctx, c, n, data, opts)
}

// A credential that may write but not tag keeps status writes working, without tags;
// after the first refusal the writes skip the tags.
func TestStatusWritesWithoutTagPermission(t *testing.T) {
	mem := testenv.Memory(t)
	f := &forbidTags{Store: mem.Store()}
	c := mem.WithStore(f)
	ctx := context.Background()
	etag, err := c.PutStatus(ctx, &record.Status{JobID: "j", State: record.StateQueued}, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.PutStatus(ctx, &record.Status{JobID: "j", State: record.StateRunning}, etag); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PutStatus(ctx, &record.Status{JobID: "j", State: record.StateDead}, etag); !storage.IsConflict(err) {
		t.Fatalf("a stale write without tags: %v, want a conflict", err)
	}
	st, _, err := c.GetStatus(ctx, "j")
	if err != nil || st.State != record.StateRunning || f.tagged != 1 || f.plain != 3 {
		t.Fatalf("status %+v, %v; %d tagged and %d plain writes, want 1 and 3", st, err, f.tagged, f.plain)
	}
	if p, _ := mem.Store().Properties(ctx, mem.Layout.StatusContainer(), "j.json"); p.TagCount != 0 {
		t.Fatalf("TagCount %d", p.TagCount)
	}
}
