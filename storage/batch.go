package storage

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nightshift-jobs/nightshift/record"
)

// BatchBlob is the blob name of a batch record.
func BatchBlob(batchID string) string { return batchID + ".json" }

// BatchShardBlob is the blob name of a batch's shard record.
func BatchShardBlob(batchID string, shard int) string {
	return batchID + "/shard-" + strconv.Itoa(shard) + ".json"
}

// BatchManifestBlob is the blob name of a batch's manifest (its children's envelopes).
func BatchManifestBlob(batchID string) string { return batchID + "/manifest.json" }

// GetBatch reads a batch record and its ETag (ErrNotFound wrapped when there is none).
func (c *Clients) GetBatch(ctx context.Context, batchID string) (*record.Batch, ETag, error) {
	var b record.Batch
	etag, err := c.GetJSON(ctx, c.Layout.BatchesContainer(), BatchBlob(batchID), &b)
	if err != nil {
		return nil, "", fmt.Errorf("batch %s: %w", batchID, err)
	}
	return &b, etag, nil
}

// PutBatch writes a batch record conditionally (etag "" = only if none exists).
func (c *Clients) PutBatch(ctx context.Context, b *record.Batch, etag ETag) (ETag, error) {
	b.UpdatedAt = time.Now().UTC()
	return c.PutJSON(ctx, c.Layout.BatchesContainer(), BatchBlob(b.BatchID), b, etag)
}

// UpdateBatch applies change to the batch record and writes it with If-Match, re-reading
// and retrying when another writer got there first. change returns nil to write nothing.
// It returns the record as stored afterwards and whether this call wrote it.
func (c *Clients) UpdateBatch(ctx context.Context, batchID string, change func(cur *record.Batch) *record.Batch) (*record.Batch, bool, error) {
	b, _, wrote, err := c.UpdateBatchFrom(ctx, batchID, nil, "", change)
	return b, wrote, err
}

// UpdateBatchFrom is UpdateBatch starting from hint (a version read or written before,
// with its ETag) instead of a read; a stale hint costs a re-read. It also returns the ETag
// of the version it returns. change must not modify its argument.
func (c *Clients) UpdateBatchFrom(ctx context.Context, batchID string, hint *record.Batch, hintETag ETag, change func(cur *record.Batch) *record.Batch) (*record.Batch, ETag, bool, error) {
	cur, etag := hint, hintETag
	for try := 0; ; try++ {
		if cur == nil {
			var err error
			if cur, etag, err = c.GetBatch(ctx, batchID); err != nil {
				return nil, "", false, err
			}
		}
		next := change(cur)
		if next == nil {
			return cur, etag, false, nil
		}
		newETag, err := c.PutBatch(ctx, next, etag)
		if err != nil {
			if IsConflict(err) && try < 100 {
				cur = nil
				if try > 0 {
					backoff(ctx, try)
				}
				continue
			}
			return nil, "", false, fmt.Errorf("update batch %s: %w", batchID, err)
		}
		return next, newETag, true, nil
	}
}

// GetBatchShard reads a shard record (ErrNotFound wrapped when no child of it ended yet).
func (c *Clients) GetBatchShard(ctx context.Context, batchID string, shard int) (*record.BatchShard, ETag, error) {
	var s record.BatchShard
	etag, err := c.GetJSON(ctx, c.Layout.BatchesContainer(), BatchShardBlob(batchID, shard), &s)
	if err != nil {
		return nil, "", fmt.Errorf("batch %s shard %d: %w", batchID, shard, err)
	}
	return &s, etag, nil
}

// ChildEnd is the end of one batch child: its index and whether it failed.
type ChildEnd struct {
	Index  int
	Failed bool
}

// MarkBatchChild records the end of a child in its shard; see MarkBatchChildren.
func (c *Clients) MarkBatchChild(ctx context.Context, b *record.Batch, index int, failed bool, hint *record.BatchShard, hintETag ETag) (*record.BatchShard, ETag, error) {
	return c.MarkBatchChildren(ctx, b, []ChildEnd{{index, failed}}, hint, hintETag)
}

// MarkBatchChildren records the ends of children of one shard in one write (idempotently:
// a child already recorded keeps its first outcome) and returns the shard as stored
// afterwards with its ETag. hint and hintETag, when hint is not nil, are a version of the
// shard read or written before: the write is tried against it without reading first
// (If-Match), and only a lost race costs a read. Bits are only ever set, so a stale hint
// can only lack bits.
func (c *Clients) MarkBatchChildren(ctx context.Context, b *record.Batch, ends []ChildEnd, hint *record.BatchShard, hintETag ETag) (*record.BatchShard, ETag, error) {
	if len(ends) == 0 {
		return nil, "", errors.New("no child ends to record")
	}
	shard, _ := b.ShardOf(ends[0].Index)
	for _, e := range ends {
		if e.Index < 0 || e.Index >= b.Total {
			return nil, "", fmt.Errorf("batch %s: child index %d is outside 0…%d", b.BatchID, e.Index, b.Total-1)
		}
		if s, _ := b.ShardOf(e.Index); s != shard {
			return nil, "", fmt.Errorf("batch %s: children %d and %d are in different shards", b.BatchID, ends[0].Index, e.Index)
		}
	}
	name := BatchShardBlob(b.BatchID, shard)
	var cur *record.BatchShard
	etag := hintETag
	if hint != nil {
		cp := *hint
		cp.Done, cp.Failed = append([]byte(nil), hint.Done...), append([]byte(nil), hint.Failed...)
		cur = &cp
	}
	for try := 0; ; try++ {
		if cur == nil {
			var err error
			cur, etag, err = c.GetBatchShard(ctx, b.BatchID, shard)
			if err != nil && !errors.Is(err, ErrNotFound) {
				return nil, "", err
			}
			if cur == nil {
				cur = &record.BatchShard{BatchID: b.BatchID, Shard: shard, Size: b.ShardLen(shard)}
			}
		}
		changed := false
		for _, e := range ends {
			_, pos := b.ShardOf(e.Index)
			if cur.Set(pos, e.Failed) {
				changed = true
			}
		}
		if !changed {
			return cur, etag, nil
		}
		newETag, err := c.PutJSON(ctx, c.Layout.BatchesContainer(), name, cur, etag)
		if err != nil {
			if IsConflict(err) && try < 100 {
				cur = nil
				if try > 0 {
					backoff(ctx, try)
				}
				continue
			}
			return nil, "", fmt.Errorf("record end of %d children of batch %s: %w", len(ends), b.BatchID, err)
		}
		return cur, newETag, nil
	}
}

// PutBatchManifest writes a batch's manifest once; an existing manifest is kept.
func (c *Clients) PutBatchManifest(ctx context.Context, m *record.BatchManifest) error {
	_, err := c.PutJSON(ctx, c.Layout.BatchesContainer(), BatchManifestBlob(m.BatchID), m, "")
	if err != nil && !IsConflict(err) {
		return fmt.Errorf("write manifest of batch %s: %w", m.BatchID, err)
	}
	return nil
}

// GetBatchManifest reads a batch's manifest.
func (c *Clients) GetBatchManifest(ctx context.Context, batchID string) (*record.BatchManifest, error) {
	var m record.BatchManifest
	if _, err := c.GetJSON(ctx, c.Layout.BatchesContainer(), BatchManifestBlob(batchID), &m); err != nil {
		return nil, fmt.Errorf("manifest of batch %s: %w", batchID, err)
	}
	return &m, nil
}

// backoff waits a little before retrying a lost conditional write, growing with try and
// jittered by the clock, so that contending writers spread out.
func backoff(ctx context.Context, try int) {
	d := time.Duration(min(try+1, 20)) * time.Duration(2+time.Now().UnixNano()%7) * time.Millisecond
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
