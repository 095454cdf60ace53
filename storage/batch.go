package storage

import (
	"context"
	"errors"
	"fmt"
	"math/bits"
	"strconv"
	"time"

	"github.com/nightshift-jobs/nightshift/envelope"
)

// BatchState is the lifecycle state of a batch.
type BatchState string

// Batch states. Succeeded and Failed are terminal.
const (
	// BatchEnqueuing: the batch record exists and its children are being enqueued.
	BatchEnqueuing BatchState = "enqueuing"
	// BatchRunning: every child is on the queue; not all have ended.
	BatchRunning BatchState = "running"
	// BatchSucceeded: every child ended and at most AllowedFailures of them failed.
	BatchSucceeded BatchState = "succeeded"
	// BatchFailed: every child ended and more than AllowedFailures failed.
	BatchFailed BatchState = "failed"
)

// Terminal reports whether the batch has ended.
func (s BatchState) Terminal() bool { return s == BatchSucceeded || s == BatchFailed }

// Batch is the record of one fan-out/fan-in batch: <batches container>/<batch id>.json.
// Children are the jobs <batch id>-<index> (index 0 … Total-1); each child's end is
// recorded exactly once in one of Shards shard records,
// and the shard whose last child ends marks itself done here. The update that marks the
// last shard done decides the batch's outcome; the finalizer job <batch id>-finalizer is
// enqueued from that point on until FinalizerEnqueued says it is on the queue. Shards are
// contiguous (child i is in shard i / PerShard), so they fill up one after another and the
// batch record is updated about once per PerShard children, spread over the batch's run.
type Batch struct {
	BatchID string `json:"batch_id"`
	// ParentID is the job that started the batch ("" when a client started it).
	ParentID string `json:"parent_id,omitempty"`
	Total    int    `json:"total"`
	Shards   int    `json:"shards"`
	// PerShard is the number of children per shard (the last one may have fewer).
	PerShard int `json:"per_shard"`
	// Queue is the queue the children go on.
	Queue string `json:"queue"`
	// FailurePolicy is "finalize" (the finalizer runs whatever happened) or "fail"
	// (the finalizer runs only when the batch succeeded).
	FailurePolicy string `json:"failure_policy"`
	// AllowedFailures is how many children may fail before the batch counts as failed.
	AllowedFailures int `json:"allowed_failures,omitempty"`
	// Finalizer is the finalizer job's envelope (its id is FinalizerJobID); nil for none.
	Finalizer *envelope.Envelope `json:"finalizer,omitempty"`
	// FinalizerQueue is the queue the finalizer goes on.
	FinalizerQueue string `json:"finalizer_queue,omitempty"`

	State BatchState `json:"state"`
	// Enqueued counts the children known to be on the queue: 0 … Enqueued-1. Resuming an
	// interrupted start enqueues from here.
	Enqueued int `json:"enqueued"`
	// ShardDone, ShardSucceeded and ShardFailed hold each finished shard's outcome.
	ShardDone      []bool `json:"shard_done"`
	ShardSucceeded []int  `json:"shard_succeeded"`
	ShardFailed    []int  `json:"shard_failed"`
	// Succeeded and Failed are the final counts (set when the batch ends).
	Succeeded int `json:"succeeded,omitempty"`
	Failed    int `json:"failed,omitempty"`
	// FinalizerEnqueued is set once the finalizer's message is on the queue.
	FinalizerEnqueued bool `json:"finalizer_enqueued,omitempty"`

	Meta       map[string]string `json:"meta,omitempty"`
	CreatedAt  time.Time         `json:"created_at"`
	UpdatedAt  time.Time         `json:"updated_at"`
	FinishedAt time.Time         `json:"finished_at,omitzero"`
}

// ChildJobID is the job id of a batch's index-th child.
func ChildJobID(batchID string, index int) string { return batchID + "-" + strconv.Itoa(index) }

// FinalizerJobID is the job id of a batch's finalizer.
func FinalizerJobID(batchID string) string { return batchID + "-finalizer" }

// ShardOf returns the shard of child index and its position in the shard.
func (b *Batch) ShardOf(index int) (shard, pos int) { return index / b.PerShard, index % b.PerShard }

// ShardLen is the number of children in shard s.
func (b *Batch) ShardLen(s int) int { return max(0, min(b.PerShard, b.Total-s*b.PerShard)) }

// BatchShard records which children of one shard have ended and which of them failed,
// one bit each: <batches container>/<batch id>/shard-<n>.json. Bits are only ever set, so
// recording a child's end twice changes nothing.
type BatchShard struct {
	BatchID string `json:"batch_id"`
	Shard   int    `json:"shard"`
	Size    int    `json:"size"`
	Done    []byte `json:"done"`
	Failed  []byte `json:"failed"`
}

// Set records the end of the child at position pos; it reports whether the shard changed.
func (s *BatchShard) Set(pos int, failed bool) bool {
	need := (s.Size + 7) / 8
	for len(s.Done) < need {
		s.Done = append(s.Done, 0)
	}
	for len(s.Failed) < need {
		s.Failed = append(s.Failed, 0)
	}
	m := byte(1) << (pos % 8)
	if s.Done[pos/8]&m != 0 {
		return false
	}
	s.Done[pos/8] |= m
	if failed {
		s.Failed[pos/8] |= m
	}
	return true
}

// Has reports whether the child at position pos has ended.
func (s *BatchShard) Has(pos int) bool {
	return pos/8 < len(s.Done) && s.Done[pos/8]&(1<<(pos%8)) != 0
}

// Counts returns how many children of the shard ended and how many of them failed.
func (s *BatchShard) Counts() (done, failed int) {
	for _, b := range s.Done {
		done += bits.OnesCount8(b)
	}
	for _, b := range s.Failed {
		failed += bits.OnesCount8(b)
	}
	return done, failed
}

// Full reports whether every child of the shard has ended.
func (s *BatchShard) Full() bool {
	d, _ := s.Counts()
	return d >= s.Size
}

// BatchBlob is the blob name of a batch record.
func BatchBlob(batchID string) string { return batchID + ".json" }

// BatchShardBlob is the blob name of a batch's shard record.
func BatchShardBlob(batchID string, shard int) string {
	return batchID + "/shard-" + strconv.Itoa(shard) + ".json"
}

// BatchManifestBlob is the blob name of a batch's manifest (its children's envelopes).
func BatchManifestBlob(batchID string) string { return batchID + "/manifest.json" }

// BatchManifest lists a batch's children in index order: each is an envelope without job
// id, batch id or enqueue time (those are filled in when it is enqueued).
type BatchManifest struct {
	BatchID  string               `json:"batch_id"`
	Children []*envelope.Envelope `json:"children"`
}

// GetBatch reads a batch record and its ETag (ErrNotFound wrapped when there is none).
func (c *Clients) GetBatch(ctx context.Context, batchID string) (*Batch, ETag, error) {
	var b Batch
	etag, err := c.GetJSON(ctx, c.Layout.BatchesContainer(), BatchBlob(batchID), &b)
	if err != nil {
		return nil, "", fmt.Errorf("batch %s: %w", batchID, err)
	}
	return &b, etag, nil
}

// PutBatch writes a batch record conditionally (etag "" = only if none exists).
func (c *Clients) PutBatch(ctx context.Context, b *Batch, etag ETag) (ETag, error) {
	b.UpdatedAt = time.Now().UTC()
	return c.PutJSON(ctx, c.Layout.BatchesContainer(), BatchBlob(b.BatchID), b, etag)
}

// UpdateBatch applies change to the batch record and writes it with If-Match, re-reading
// and retrying when another writer got there first. change returns nil to write nothing.
// It returns the record as stored afterwards and whether this call wrote it.
func (c *Clients) UpdateBatch(ctx context.Context, batchID string, change func(cur *Batch) *Batch) (*Batch, bool, error) {
	b, _, wrote, err := c.UpdateBatchFrom(ctx, batchID, nil, "", change)
	return b, wrote, err
}

// UpdateBatchFrom is UpdateBatch starting from hint (a version read or written before,
// with its ETag) instead of a read; a stale hint costs a re-read. It also returns the ETag
// of the version it returns. change must not modify its argument.
func (c *Clients) UpdateBatchFrom(ctx context.Context, batchID string, hint *Batch, hintETag ETag, change func(cur *Batch) *Batch) (*Batch, ETag, bool, error) {
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
func (c *Clients) GetBatchShard(ctx context.Context, batchID string, shard int) (*BatchShard, ETag, error) {
	var s BatchShard
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
func (c *Clients) MarkBatchChild(ctx context.Context, b *Batch, index int, failed bool, hint *BatchShard, hintETag ETag) (*BatchShard, ETag, error) {
	return c.MarkBatchChildren(ctx, b, []ChildEnd{{index, failed}}, hint, hintETag)
}

// MarkBatchChildren records the ends of children of one shard in one write (idempotently:
// a child already recorded keeps its first outcome) and returns the shard as stored
// afterwards with its ETag. hint and hintETag, when hint is not nil, are a version of the
// shard read or written before: the write is tried against it without reading first
// (If-Match), and only a lost race costs a read. Bits are only ever set, so a stale hint
// can only lack bits.
func (c *Clients) MarkBatchChildren(ctx context.Context, b *Batch, ends []ChildEnd, hint *BatchShard, hintETag ETag) (*BatchShard, ETag, error) {
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
	var cur *BatchShard
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
				cur = &BatchShard{BatchID: b.BatchID, Shard: shard, Size: b.ShardLen(shard)}
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
func (c *Clients) PutBatchManifest(ctx context.Context, m *BatchManifest) error {
	_, err := c.PutJSON(ctx, c.Layout.BatchesContainer(), BatchManifestBlob(m.BatchID), m, "")
	if err != nil && !IsConflict(err) {
		return fmt.Errorf("write manifest of batch %s: %w", m.BatchID, err)
	}
	return nil
}

// GetBatchManifest reads a batch's manifest.
func (c *Clients) GetBatchManifest(ctx context.Context, batchID string) (*BatchManifest, error) {
	var m BatchManifest
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
