package record

import (
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

// BatchManifest lists a batch's children in index order: each is an envelope without job
// id, batch id or enqueue time (those are filled in when it is enqueued).
type BatchManifest struct {
	BatchID  string               `json:"batch_id"`
	Children []*envelope.Envelope `json:"children"`
}
