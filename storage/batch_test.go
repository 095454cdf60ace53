package storage_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/nightshift-jobs/nightshift/record"
	"github.com/nightshift-jobs/nightshift/storage"
)

// Two writers with their own (soon stale) versions of one shard, as two instances would
// have: a stale hint costs a re-read, never a lost bit; marking a child twice keeps its
// first outcome.
func TestMarkBatchChildStaleHints(t *testing.T) {
	t.Parallel()
	forBackends(t, func(t *testing.T, c *storage.Clients) {
		ctx := context.Background()
		b := &record.Batch{BatchID: "b1", Total: 40, Shards: 2, PerShard: 20}
		type hint struct {
			s    *record.BatchShard
			etag storage.ETag
		}
		var hints [2]hint
		var wg sync.WaitGroup
		for w := 0; w < 2; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < 20; i += 2 { // children of shard 0, split between writers
					s, etag, err := c.MarkBatchChild(ctx, b, i, i == 6, hints[w].s, hints[w].etag)
					if err != nil {
						t.Error(err)
						return
					}
					hints[w] = hint{s, etag}
				}
			}()
		}
		wg.Wait()
		s, _, err := c.GetBatchShard(ctx, "b1", 0)
		if err != nil {
			t.Fatal(err)
		}
		if d, f := s.Counts(); d != 20 || f != 1 || !s.Full() {
			t.Fatalf("shard 0: %d ended, %d failed, full %v", d, f, s.Full())
		}
		s2, _, err := c.MarkBatchChild(ctx, b, 6, false, nil, "")
		if err != nil {
			t.Fatal(err)
		}
		if _, f := s2.Counts(); f != 1 {
			t.Fatal("marking a child again changed its outcome")
		}
		if _, _, err := c.MarkBatchChild(ctx, b, 40, false, nil, ""); err == nil {
			t.Fatal("index out of range accepted")
		}
		if _, _, err := c.GetBatchShard(ctx, "b1", 1); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("untouched shard: %v", err)
		}
	})
}

// A dedupe lock is created once, replaced only over its version and deleted only at its
// version.
func TestUniqueLockConditions(t *testing.T) {
	t.Parallel()
	forBackends(t, func(t *testing.T, c *storage.Clients) {
		ctx := context.Background()
		l := &storage.UniqueLock{Key: "k", JobID: "j1"}
		etag, err := c.PutUniqueLock(ctx, l, "")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.PutUniqueLock(ctx, &storage.UniqueLock{Key: "k", JobID: "j2"}, ""); !storage.IsConflict(err) {
			t.Fatalf("second create: %v", err)
		}
		etag2, err := c.PutUniqueLock(ctx, &storage.UniqueLock{Key: "k", JobID: "j3"}, etag)
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := c.DeleteUniqueLock(ctx, "k", etag); ok || err != nil {
			t.Fatalf("delete at a stale version: %v %v", ok, err)
		}
		cur, _, err := c.GetUniqueLock(ctx, "k")
		if err != nil || cur.JobID != "j3" {
			t.Fatalf("lock %+v %v", cur, err)
		}
		if ok, err := c.DeleteUniqueLock(ctx, "k", etag2); !ok || err != nil {
			t.Fatalf("delete: %v %v", ok, err)
		}
		if ok, err := c.DeleteUniqueLock(ctx, "k", etag2); ok || err != nil {
			t.Fatalf("delete of a missing lock: %v %v", ok, err)
		}
	})
}

// Several ends of one shard go in one write; ends of different shards are refused.
func TestMarkBatchChildrenGroup(t *testing.T) {
	t.Parallel()
	forBackends(t, func(t *testing.T, c *storage.Clients) {
		ctx := context.Background()
		b := &record.Batch{BatchID: "g1", Total: 20, Shards: 2, PerShard: 16}
		s, _, err := c.MarkBatchChildren(ctx, b, []storage.ChildEnd{{16, false}, {17, true}, {18, false}, {19, false}}, nil, "")
		if err != nil {
			t.Fatal(err)
		}
		if d, f := s.Counts(); d != 4 || f != 1 || !s.Full() || s.Shard != 1 || s.Size != 4 {
			t.Fatalf("shard %+v", s)
		}
		if _, _, err := c.MarkBatchChildren(ctx, b, []storage.ChildEnd{{1, false}, {17, false}}, nil, ""); err == nil {
			t.Fatal("ends of two shards accepted")
		}
	})
}
