package nightshift

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nightshift-jobs/nightshift/envelope"
	"github.com/nightshift-jobs/nightshift/record"
	"github.com/nightshift-jobs/nightshift/storage"
)

// FailurePolicy decides what failed children do to a batch. Either way the batch only
// ends when every child has ended (succeeded, dead or cancelled); a child counts as failed
// when it is dead or cancelled. More than AllowedFailures failed children make the batch
// failed.
type FailurePolicy string

// Failure policies.
const (
	// FinalizeAlways runs the finalizer when every child has ended, whatever happened; it
	// reads the failures with BatchChildren and its job.BatchID. The default.
	FinalizeAlways FailurePolicy = "finalize"
	// FailBatch runs the finalizer only when the batch succeeded; a failed batch ends
	// without it (its record and the parent's status say failed).
	FailBatch FailurePolicy = "fail"
)

// MaxBatchIDLength bounds a batch id: child ids are "<batch id>-<index>" and must stay
// valid job ids (at most 128 characters).
const MaxBatchIDLength = 100

// batchChunk is how many children are enqueued between two records of enqueue progress.
const batchChunk = 500

// BatchParams describe a batch: children enqueued as one unit, and a finalizer job that
// runs exactly once when every child has ended.
type BatchParams struct {
	// BatchID names the batch; starting a batch id again resumes it (the children and
	// finalizer of the first start are used; nothing is enqueued twice in effect). Inside
	// a job the default is derived from the job's id and Name, so a retried parent
	// resumes its batch; from a client the default is a new id.
	BatchID string
	// Name tells apart several batches started by one job (default "batch").
	Name string
	// Children are the child jobs, in index order: child i gets job id
	// "<batch id>-<i>". Their Opts may set MaxAttempts, Timeout and Meta; job ids,
	// queues, delays, dedupe keys and callbacks are the batch's business and refused.
	Children []EnqueueParams
	// Finalizer is the job run when every child has ended (nil for none). Its job id is
	// "<batch id>-finalizer"; its job.BatchID names the batch.
	Finalizer *EnqueueParams
	// Priority chooses the children's queue (and the finalizer's); Queue overrides it
	// with a full queue name.
	Priority Priority
	Queue    string
	// FailurePolicy is FinalizeAlways (default) or FailBatch.
	FailurePolicy FailurePolicy
	// AllowedFailures is how many children may fail with the batch still succeeding.
	AllowedFailures int
	// Meta is stored in the batch record.
	Meta map[string]string
}

// BatchInfo describes a started batch.
type BatchInfo struct {
	BatchID        string            `json:"batch_id"`
	ParentID       string            `json:"parent_id,omitempty"`
	Total          int               `json:"total"`
	State          record.BatchState `json:"state"`
	FinalizerJobID string            `json:"finalizer_job_id,omitempty"`
	// Resumed is true when the batch existed already and this call resumed (or found
	// complete) its start.
	Resumed bool `json:"resumed,omitempty"`
}

// jobContext is what a running job's context carries for StartBatch and BatchChildren.
type jobContext struct {
	client     *Client
	jobID      string
	replay     int
	enqueuedAt time.Time
	checkpoint *checkpointer // Checkpoint and Resume (checkpoint.go)
}

type jobContextKey struct{}

func withJobContext(ctx context.Context, jc *jobContext) context.Context {
	return context.WithValue(ctx, jobContextKey{}, jc)
}

func jobFromContext(ctx context.Context) *jobContext {
	jc, _ := ctx.Value(jobContextKey{}).(*jobContext)
	return jc
}

// JobClient returns a client on the handler's storage from the context of a running job
// (nil outside one), so job code can enqueue follow-up jobs.
func JobClient(ctx context.Context) *Client {
	if jc := jobFromContext(ctx); jc != nil {
		return jc.client
	}
	return nil
}

// StartBatch starts a batch from inside a running job: the job becomes the batch's
// parent, and its status shows the batch (Status.Batch). The default batch id is derived
// from the job, so a retried job resumes its batch instead of starting a second one. Use
// Client.StartBatch outside jobs.
func StartBatch(ctx context.Context, p BatchParams) (*BatchInfo, error) {
	jc := jobFromContext(ctx)
	if jc == nil {
		return nil, errors.New("nightshift: StartBatch needs the context of a running job; outside jobs use Client.StartBatch")
	}
	if jc.client == nil {
		return nil, errors.New("nightshift: StartBatch needs a client; this job runs without one (nightshifttest: set WorkOptions.Client)")
	}
	if p.BatchID == "" {
		name := p.Name
		if name == "" {
			name = "batch"
		}
		p.BatchID = envelope.DerivedJobID(jc.enqueuedAt, jc.jobID+"/"+name+"/"+strconv.Itoa(jc.replay))
	}
	return jc.client.startBatch(ctx, p, jc.jobID)
}

// StartBatch enqueues a batch: it writes the batch's manifest and record first, then
// enqueues the children in chunks, recording how far it got, so that calling it again with
// the same BatchID (or ResumeBatch) after a crash enqueues only what may be missing.
func (c *Client) StartBatch(ctx context.Context, p BatchParams) (*BatchInfo, error) {
	if p.BatchID == "" {
		p.BatchID = envelope.NewJobID()
	}
	return c.startBatch(ctx, p, "")
}

func (c *Client) startBatch(ctx context.Context, p BatchParams, parentID string) (*BatchInfo, error) {
	ctx, end := c.startEnqueue(ctx, EnqueueSpan{JobID: p.BatchID, Queue: p.Queue, Batch: true, Children: len(p.Children)})
	info, err := c.startBatchTraced(ctx, p, parentID)
	end(err)
	return info, err
}

func (c *Client) startBatchTraced(ctx context.Context, p BatchParams, parentID string) (*BatchInfo, error) {
	b, children, err := c.buildBatch(ctx, p, parentID)
	if err != nil {
		return nil, fmt.Errorf("nightshift: start batch: %w", err)
	}
	if err := c.store.PutBatchManifest(ctx, &record.BatchManifest{BatchID: b.BatchID, Children: children}); err != nil {
		return nil, fmt.Errorf("nightshift: start batch: %w", err)
	}
	resumed := false
	if _, err := c.store.PutBatch(ctx, b, ""); err != nil {
		if !storage.IsConflict(err) {
			return nil, fmt.Errorf("nightshift: start batch %s: %w", b.BatchID, err)
		}
		resumed = true
		if b, _, err = c.store.GetBatch(ctx, b.BatchID); err != nil {
			return nil, fmt.Errorf("nightshift: resume batch: %w", err)
		}
		if b.State != record.BatchEnqueuing {
			return batchInfo(b, true), nil
		}
		m, err := c.store.GetBatchManifest(ctx, b.BatchID)
		if err != nil {
			return nil, fmt.Errorf("nightshift: resume batch: %w", err)
		}
		children = m.Children
	}
	if parentID != "" {
		c.updateParent(ctx, b)
	}
	if err := c.enqueueChildren(ctx, b, children); err != nil {
		return nil, fmt.Errorf("nightshift: batch %s: %w (call StartBatch again with this batch id, or ResumeBatch, to finish enqueueing)", b.BatchID, err)
	}
	b, _, err = c.store.GetBatch(ctx, b.BatchID)
	if err != nil {
		return nil, fmt.Errorf("nightshift: batch: %w", err)
	}
	return batchInfo(b, resumed), nil
}

// ResumeBatch finishes enqueueing a batch whose start was interrupted, from its manifest.
func (c *Client) ResumeBatch(ctx context.Context, batchID string) (*BatchInfo, error) {
	b, _, err := c.store.GetBatch(ctx, batchID)
	if err != nil {
		return nil, fmt.Errorf("nightshift: %w", err)
	}
	if b.State == record.BatchEnqueuing {
		m, err := c.store.GetBatchManifest(ctx, batchID)
		if err != nil {
			return nil, fmt.Errorf("nightshift: resume batch: %w", err)
		}
		if err := c.enqueueChildren(ctx, b, m.Children); err != nil {
			return nil, fmt.Errorf("nightshift: batch %s: %w", batchID, err)
		}
		if b, _, err = c.store.GetBatch(ctx, batchID); err != nil {
			return nil, fmt.Errorf("nightshift: %w", err)
		}
	}
	return batchInfo(b, true), nil
}

func batchInfo(b *record.Batch, resumed bool) *BatchInfo {
	bi := &BatchInfo{BatchID: b.BatchID, ParentID: b.ParentID, Total: b.Total, State: b.State, Resumed: resumed}
	if b.Finalizer != nil {
		bi.FinalizerJobID = b.Finalizer.JobID
	}
	return bi
}

// batchShards splits a batch's children into contiguous shards of perShard children: 16
// per shard, more when that would make more than 1024 shards. Shards fill up one after
// another, so the batch record is updated about once per 16 children, spread over the
// run; children of one shard ending together in one process are serialised by the
// executor's shard cache instead of racing for the record.
func batchShards(total int) (shards, perShard int) {
	perShard = max(16, (total+1023)/1024)
	return max(1, (total+perShard-1)/perShard), perShard
}

// checkBatchBounds checks the batch's counts and meta against the envelope limits.
func checkBatchBounds(p *BatchParams) error {
	if p.AllowedFailures < 0 {
		return fmt.Errorf("allowed failures %d: must be 0 or more", p.AllowedFailures)
	}
	if n := len(p.Children); n > envelope.MaxBatchChildren {
		return &envelope.FieldError{Field: "children", Problem: fmt.Sprintf("has %d children; at most %d per batch (envelope.MaxBatchChildren) — split the work into several batches", n, envelope.MaxBatchChildren)}
	}
	if p.AllowedFailures > envelope.MaxBatchChildren {
		return &envelope.FieldError{Field: "allowed_failures", Problem: fmt.Sprintf("%d must be at most %d (envelope.MaxBatchChildren)", p.AllowedFailures, envelope.MaxBatchChildren)}
	}
	return envelope.CheckMeta("meta", p.Meta)
}

// buildBatch validates the params and builds the record and the children's envelopes.
func (c *Client) buildBatch(ctx context.Context, p BatchParams, parentID string) (*record.Batch, []*envelope.Envelope, error) {
	if err := checkBatchParams(&p); err != nil {
		return nil, nil, err
	}
	queue, err := c.batchQueue(&p)
	if err != nil {
		return nil, nil, err
	}
	now := c.opts.Now().UTC()
	b := newBatchRecord(&p, parentID, queue, now)
	children := make([]*envelope.Envelope, len(p.Children))
	for i, ep := range p.Children {
		env, err := c.batchEnvelope(ctx, b, ep, record.ChildJobID(b.BatchID, i))
		if err != nil {
			return nil, nil, fmt.Errorf("child %d: %w", i, err)
		}
		children[i] = env
	}
	if p.Finalizer != nil {
		env, err := c.batchEnvelope(ctx, b, *p.Finalizer, record.FinalizerJobID(b.BatchID))
		if err != nil {
			return nil, nil, fmt.Errorf("finalizer: %w", err)
		}
		b.Finalizer, b.FinalizerQueue = env, queue
	}
	if b.Total == 0 {
		b.State, b.FinishedAt = record.BatchSucceeded, now
	}
	return b, children, nil
}

// checkBatchParams checks the batch id, the failure policy (defaulting it to
// FinalizeAlways) and the batch's bounds.
func checkBatchParams(p *BatchParams) error {
	if pr := envelope.ValidJobID(p.BatchID); pr != "" || len(p.BatchID) > MaxBatchIDLength {
		if pr == "" {
			pr = fmt.Sprintf("is %d characters; at most %d", len(p.BatchID), MaxBatchIDLength)
		}
		return &envelope.FieldError{Field: "batch_id", Problem: pr}
	}
	switch p.FailurePolicy {
	case "":
		p.FailurePolicy = FinalizeAlways
	case FinalizeAlways, FailBatch:
	default:
		return fmt.Errorf("failure policy %q: want %q or %q", p.FailurePolicy, FinalizeAlways, FailBatch)
	}
	return checkBatchBounds(p)
}

// batchQueue returns the queue of the batch's jobs: the params' queue when it is a job
// queue, else the priority's queue.
func (c *Client) batchQueue(p *BatchParams) (string, error) {
	if p.Queue == "" {
		return c.PriorityQueue(p.Priority)
	}
	if pr := c.queueProblem(p.Queue); pr != "" {
		return "", &envelope.FieldError{Field: "queue", Problem: pr}
	}
	return p.Queue, nil
}

// newBatchRecord returns the record of a batch that is being enqueued, with its shards.
func newBatchRecord(p *BatchParams, parentID, queue string, now time.Time) *record.Batch {
	b := &record.Batch{
		BatchID: p.BatchID, ParentID: parentID, Total: len(p.Children),
		Queue: queue, FailurePolicy: string(p.FailurePolicy), AllowedFailures: p.AllowedFailures,
		State: record.BatchEnqueuing, Meta: p.Meta, CreatedAt: now,
	}
	b.Shards, b.PerShard = batchShards(b.Total)
	b.ShardDone = make([]bool, b.Shards)
	b.ShardSucceeded = make([]int, b.Shards)
	b.ShardFailed = make([]int, b.Shards)
	return b
}

// batchEnvelope builds the envelope of one child or the finalizer of batch b, with job id
// jobID, on the batch's queue; large args are claim-checked.
func (c *Client) batchEnvelope(ctx context.Context, b *record.Batch, ep EnqueueParams, jobID string) (*envelope.Envelope, error) {
	kind, raw, err := paramsKindArgs(ep)
	if err != nil {
		return nil, err
	}
	o := EnqueueOptions{}
	if ep.Opts != nil {
		o = *ep.Opts
	}
	if batchOwnsOption(&o) {
		return nil, errors.New("options may set MaxAttempts, Timeout and Meta only (job id, queue, delay, dedupe key and callback belong to the batch)")
	}
	env, _, _, err := c.build(kind, raw, &o)
	if err != nil {
		return nil, err
	}
	env.JobID, env.BatchID, env.ParentID, env.Queue = jobID, b.BatchID, b.ParentID, b.Queue
	env.Trace = c.traceOf(ctx)
	if err := claimCheck(ctx, c.store, env, c.maxPayload()); err != nil {
		return nil, err
	}
	return env, env.Validate()
}

// paramsKindArgs returns the kind and JSON args of ep: from Args when set, else Kind and
// RawArgs.
func paramsKindArgs(ep EnqueueParams) (string, json.RawMessage, error) {
	if ep.Args == nil {
		return ep.Kind, ep.RawArgs, nil
	}
	raw, err := json.Marshal(ep.Args)
	if err != nil {
		return "", nil, fmt.Errorf("args %T do not encode as JSON: %w", ep.Args, err)
	}
	return ep.Args.Kind(), raw, nil
}

// batchOwnsOption says whether o sets an option that belongs to the batch, not to one of
// its jobs (job id, queue, priority, delay, dedupe, callback).
func batchOwnsOption(o *EnqueueOptions) bool {
	return o.JobID != "" || o.Queue != "" || o.Priority != PriorityNormal || o.DedupeReturnExisting ||
		o.RunIn != 0 || !o.RunAt.IsZero() || o.DedupeKey != "" || o.CallbackURL != "" || o.CallbackQueue != ""
}

// maxPayload is the client's bound on a job's args.
func (c *Client) maxPayload() int64 {
	if c.opts.MaxPayloadBytes > 0 {
		return c.opts.MaxPayloadBytes
	}
	return DefaultMaxPayloadBytes
}

// enqueueChildren puts children Enqueued … Total-1 on the queue, chunk by chunk, recording
// progress after each chunk; then marks the batch running (or finishes an empty batch).
// Children are sent without a "queued" status: the batch record says how many are on the
// queue, and each child's status appears when it runs.
func (c *Client) enqueueChildren(ctx context.Context, b *record.Batch, children []*envelope.Envelope) error {
	if len(children) != b.Total {
		return fmt.Errorf("manifest has %d children; the batch record says %d", len(children), b.Total)
	}
	for start := b.Enqueued; start < b.Total; start += batchChunk {
		end := min(start+batchChunk, b.Total)
		if err := c.sendAll(ctx, b.Queue, children[start:end]); err != nil {
			return err
		}
		if _, _, err := c.store.UpdateBatch(ctx, b.BatchID, func(cur *record.Batch) *record.Batch {
			if cur.Enqueued >= end {
				return nil
			}
			next := *cur
			next.Enqueued = end
			return &next
		}); err != nil {
			return err
		}
	}
	nb, _, err := c.store.UpdateBatch(ctx, b.BatchID, func(cur *record.Batch) *record.Batch {
		if cur.State != record.BatchEnqueuing {
			return nil
		}
		next := *cur
		next.State = record.BatchRunning
		next.Enqueued = next.Total
		return &next
	})
	if err != nil {
		return err
	}
	if nb.State.Terminal() {
		// An empty batch, or one whose children all ended during enqueueing (the last
		// shard's completion may have found the finalizer not enqueued yet).
		return finishBatch(ctx, c.store, nb)
	}
	return nil
}

// sendAll enqueues envelopes concurrently (ClientOptions.Concurrency at once).
func (c *Client) sendAll(ctx context.Context, queue string, envs []*envelope.Envelope) error {
	sem := make(chan struct{}, c.opts.Concurrency)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for _, env := range envs {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			body, err := env.Encode()
			if err == nil {
				_, err = c.store.Enqueue(ctx, queue, body, 0, 0)
			}
			if err != nil {
				mu.Lock()
				if first == nil {
					first = fmt.Errorf("enqueue child %s: %w", env.JobID, err)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return first
}

// updateParent records the batch in its parent's status (Status.Batch), without changing
// the parent's state. Best effort: the batch record is the source of truth.
func (c *Client) updateParent(ctx context.Context, b *record.Batch) {
	_ = updateParentStatus(ctx, c.store, b)
}

func updateParentStatus(ctx context.Context, store *storage.Clients, b *record.Batch) error {
	if b.ParentID == "" {
		return nil
	}
	sum := &record.BatchSummary{BatchID: b.BatchID, State: b.State, Total: b.Total, Succeeded: b.Succeeded, Failed: b.Failed}
	_, _, err := store.UpdateStatus(ctx, b.ParentID, record.BatchSummarised(sum).Apply)
	return err
}

// finishBatch runs after the batch has ended: it enqueues the finalizer (unless the
// policy skips it), records the outcome in the parent's status, then marks the finalizer
// enqueued. A crash anywhere in between makes a later call do it again; the finalizer's id
// is fixed and its execution is claimed (claimFinalizer), so it still runs once.
func finishBatch(ctx context.Context, store *storage.Clients, b *record.Batch) error {
	if !b.State.Terminal() || b.FinalizerEnqueued {
		return nil
	}
	if b.Finalizer != nil && (b.FailurePolicy != string(FailBatch) || b.State == record.BatchSucceeded) {
		env := *b.Finalizer
		body, err := env.Encode()
		if err != nil {
			return err
		}
		if _, err := store.Enqueue(ctx, b.FinalizerQueue, body, 0, 0); err != nil {
			return err
		}
		// The finalizer's envelope names the batch and is of life 0, due now.
		st := record.Queued(&env, b.FinalizerQueue, time.Time{}).Apply(nil)
		if _, err := store.PutStatus(ctx, st, ""); err != nil && !storage.IsConflict(err) {
			return err
		}
	}
	if err := updateParentStatus(ctx, store, b); err != nil {
		return err
	}
	_, _, err := store.UpdateBatch(ctx, b.BatchID, func(cur *record.Batch) *record.Batch {
		if cur.FinalizerEnqueued {
			return nil
		}
		next := *cur
		next.FinalizerEnqueued = true
		return &next
	})
	return err
}

// childIndex returns the index of a batch child from its job id, false for the finalizer
// or a job id not shaped like a child's.
func childIndex(env *envelope.Envelope) (int, bool) {
	rest, ok := strings.CutPrefix(env.JobID, env.BatchID+"-")
	if !ok {
		return 0, false
	}
	i, err := strconv.Atoi(rest)
	return i, err == nil && i >= 0 && strconv.Itoa(i) == rest
}

// batches is the batch feature's hook set on the pipeline, with the executor's caches of
// batch records. At admission a finalizer is claimed (claimFinalizer); when a child's end
// is recorded, however it was (its attempt, its dead letter, a redelivery after a crash),
// the child is counted (batchChildEnded).
type batches struct {
	x *executor
	// shapes caches batch shapes (id, total, shards) by batch id; shapeCount bounds it.
	shapes     sync.Map
	shapeCount atomic.Int64
	// shards caches shard records by "<batch id>/<shard>"; shardCount bounds it.
	shards     sync.Map
	shardCount atomic.Int64
	// records caches batch records by batch id (bounded with shapes).
	records sync.Map
}

// admit makes a batch finalizer run once (claimFinalizer); other jobs pass.
func (f *batches) admit(ctx context.Context, a *attempt) (outcome, bool) {
	if !isFinalizer(a.env) {
		return outcome{}, true
	}
	why, err := f.claimFinalizer(ctx, a.env, a.maxAttempts, a.cur, a.etag, a.d.Queue, a.timeout)
	if err != nil {
		return infraFailure(err), false
	}
	if why != "" {
		return skipped(a, why), false
	}
	a.claimed = true
	return outcome{}, true
}

// ended counts the end of a batch child (batchChildEnded); its error fails the
// invocation.
func (f *batches) ended(ctx context.Context, e jobEnd) error {
	if e.env.BatchID == "" {
		return nil
	}
	return f.batchChildEnded(ctx, e.env, e.state)
}

// batchChildEnded is the end-of-job hook for batch children: it records the
// child's end in its shard (idempotent), and when that completes the shard, in the batch
// record; the update that completes the batch decides its outcome and enqueues the
// finalizer. Any error fails the invocation, so the redelivered message (which the
// executor skips as ended) calls it again.
func (f *batches) batchChildEnded(ctx context.Context, env *envelope.Envelope, state record.State) error {
	idx, ok := childIndex(env)
	if !ok {
		return nil
	}
	b, err := f.batchShape(ctx, env.BatchID)
	if errors.Is(err, storage.ErrNotFound) {
		f.x.log.Warn("batch child ended but its batch record is missing", "job_id", env.JobID, "batch_id", env.BatchID)
		return nil
	}
	if err != nil {
		return err
	}
	shard, lead, err := f.markChild(ctx, b, idx, state != record.StateSucceeded)
	if err != nil {
		return err
	}
	if !shard.Full() || !lead {
		// Not the last end of the shard, or another child of the same write finishes it
		// (were it to fail, its redelivery does it).
		return nil
	}
	done, failed := shard.Counts()
	nb, wrote, err := f.markShardDone(ctx, b.BatchID, shard.Shard, done, failed)
	if err != nil {
		return err
	}
	if !wrote {
		// The shard was marked done before (this child ended twice, or a crash came
		// between marking and finishing). This process's cached record may be behind:
		// read it, so a batch that ended without its finalizer gets it now.
		if nb, _, err = f.x.ext.GetBatch(ctx, b.BatchID); err != nil {
			return err
		}
	}
	if nb.State.Terminal() {
		f.x.log.Info("batch ended", "batch_id", nb.BatchID, "state", nb.State, "succeeded", nb.Succeeded, "failed", nb.Failed)
	}
	return finishBatch(ctx, f.x.ext, nb)
}

// batchShape returns a batch's immutable shape (id, total, shards) from the executor's
// cache, reading the record on a miss: one read per batch and process instead of one per
// child.
func (f *batches) batchShape(ctx context.Context, batchID string) (*record.Batch, error) {
	if v, ok := f.shapes.Load(batchID); ok {
		return v.(*record.Batch), nil
	}
	b, _, err := f.x.ext.GetBatch(ctx, batchID)
	if err != nil {
		return nil, err
	}
	shape := &record.Batch{BatchID: b.BatchID, Total: b.Total, Shards: b.Shards, PerShard: b.PerShard}
	if f.shapeCount.Add(1) > maxCachedBatches {
		f.shapes.Clear()
		f.records.Clear()
		f.shapeCount.Store(1)
	}
	f.shapes.Store(batchID, shape)
	return shape, nil
}

// shardEntry is the executor's last known version of one shard record, and the children
// of the shard waiting to be recorded. Children of a shard ending together in this process
// do not race each other for the record: one of them writes, in one conditional write,
// every end that arrived meanwhile (group commit); other instances are handled by the
// ETag.
type shardEntry struct {
	mu      sync.Mutex
	shard   *record.BatchShard
	etag    storage.ETag
	pending []storage.ChildEnd
	next    *shardRound // the round the pending ends will be written in
	writing bool
}

// shardRound is one write of a shard's pending ends; done is closed when it is over.
// leader is the child whose end opened the round: when the round fills the shard, only it
// goes on to finish the shard, so the children ending together do not all do it.
type shardRound struct {
	done   chan struct{}
	leader int
	shard  *record.BatchShard
	err    error
}

// markChild records a child's end through the shard cache: usually one conditional write
// shared with the other children of the shard ending at the same time, and no read. lead
// reports whether this child leads its round (see shardRound).
func (f *batches) markChild(ctx context.Context, b *record.Batch, idx int, failed bool) (_ *record.BatchShard, lead bool, _ error) {
	shard, _ := b.ShardOf(idx)
	key := b.BatchID + "/" + strconv.Itoa(shard)
	v, ok := f.shards.Load(key)
	if !ok {
		if f.shardCount.Add(1) > maxCachedShards {
			f.shards.Clear()
			f.shardCount.Store(1)
		}
		v, _ = f.shards.LoadOrStore(key, &shardEntry{})
	}
	e := v.(*shardEntry)
	e.mu.Lock()
	e.pending = append(e.pending, storage.ChildEnd{Index: idx, Failed: failed})
	if e.next == nil {
		e.next = &shardRound{done: make(chan struct{}), leader: idx}
	}
	mine := e.next
	lead = mine.leader == idx
	if e.writing {
		e.mu.Unlock()
		select {
		case <-mine.done:
			return mine.shard, lead, mine.err
		case <-ctx.Done():
			return nil, false, ctx.Err()
		}
	}
	e.writing = true
	for len(e.pending) > 0 {
		ends, round := e.pending, e.next
		e.pending, e.next = nil, nil
		hint, etag := e.shard, e.etag
		e.mu.Unlock()
		sh, newETag, err := f.x.ext.MarkBatchChildren(context.WithoutCancel(ctx), b, ends, hint, etag)
		e.mu.Lock()
		if err != nil {
			e.shard, e.etag = nil, ""
		} else {
			e.shard, e.etag = sh, newETag
		}
		round.shard, round.err = sh, err
		close(round.done)
	}
	e.writing = false
	e.mu.Unlock()
	return mine.shard, lead, mine.err
}

// recordEntry is the executor's last known version of a batch record (see shardEntry).
type recordEntry struct {
	mu   sync.Mutex
	b    *record.Batch
	etag storage.ETag
}

// markShardDone marks a full shard done in the batch record, through a per-process cache
// of the record (usually one conditional write, no read); the update that marks the last
// shard done decides the outcome. It returns the record as stored afterwards and whether
// this call wrote it.
func (f *batches) markShardDone(ctx context.Context, batchID string, s, done, failed int) (*record.Batch, bool, error) {
	v, ok := f.records.Load(batchID)
	if !ok {
		v, _ = f.records.LoadOrStore(batchID, &recordEntry{})
	}
	e := v.(*recordEntry)
	e.mu.Lock()
	defer e.mu.Unlock()
	nb, etag, wrote, err := f.x.ext.UpdateBatchFrom(ctx, batchID, e.b, e.etag, func(cur *record.Batch) *record.Batch {
		if s >= len(cur.ShardDone) || cur.ShardDone[s] {
			return nil
		}
		next := *cur
		next.ShardDone = append([]bool(nil), cur.ShardDone...)
		next.ShardSucceeded = append([]int(nil), cur.ShardSucceeded...)
		next.ShardFailed = append([]int(nil), cur.ShardFailed...)
		next.ShardDone[s], next.ShardSucceeded[s], next.ShardFailed[s] = true, done-failed, failed
		all := true
		next.Succeeded, next.Failed = 0, 0
		for i, d := range next.ShardDone {
			all = all && d
			next.Succeeded += next.ShardSucceeded[i]
			next.Failed += next.ShardFailed[i]
		}
		if all {
			next.State = record.BatchSucceeded
			if next.Failed > next.AllowedFailures {
				next.State = record.BatchFailed
			}
			next.FinishedAt = time.Now().UTC()
		} else {
			next.Succeeded, next.Failed = 0, 0
		}
		return &next
	})
	if err != nil {
		e.b, e.etag = nil, ""
		return nil, false, err
	}
	e.b, e.etag = nb, etag
	return nb, wrote, nil
}

// maxCachedShards bounds the executor's cache of shard records.
const maxCachedShards = 16384

// maxCachedBatches bounds the executor's cache of batch shapes.
const maxCachedBatches = 1024

// isFinalizer reports whether env is a batch's finalizer job.
func isFinalizer(env *envelope.Envelope) bool {
	return env.BatchID != "" && env.JobID == record.FinalizerJobID(env.BatchID)
}

// finalizerRecheck bounds how long a duplicate finalizer message waits before it looks
// again at a finalizer that another delivery is running.
const finalizerRecheck = time.Minute

// claimFinalizer makes a finalizer run once even when its message is on the queue twice:
// before running, the delivery claims the attempt by writing the "running" status over
// the version it read (If-Match / If-None-Match). A delivery that loses while the winner is
// running puts itself back on the queue for later, when it normally finds the finalizer
// ended and is skipped; a claim older than the attempt's timeout (its runner died) is taken
// over. It returns "" when this delivery may run, else why not.
func (f *batches) claimFinalizer(ctx context.Context, env *envelope.Envelope, maxAttempts int, cur *record.Status, etag storage.ETag, queue string, timeout time.Duration) (string, error) {
	now := time.Now().UTC()
	for try := 0; try < 10; try++ {
		if cur != nil && cur.Replay == env.Replay && cur.Attempt == env.Attempt && cur.State == record.StateRunning &&
			now.Sub(cur.StartedAt) < timeout+time.Minute {
			if err := f.x.enqueue(ctx, queue, env, min(timeout, finalizerRecheck)); err != nil {
				return "", err
			}
			return "finalizer is running in another delivery; this duplicate checks back later", nil
		}
		if why := staleDelivery(cur, env); why != "" {
			return why, nil
		}
		running := record.Claimed(env, record.Run{MaxAttempts: maxAttempts, Queue: queue}, now).Apply(cur)
		if running == nil {
			return fmt.Sprintf("attempt %d is superseded by the job's status (%s, attempt %d)", env.Attempt, cur.State, cur.Attempt), nil
		}
		_, err := f.x.store.PutStatus(ctx, running, etag)
		if err == nil {
			return "", nil
		}
		if !storage.IsConflict(err) {
			return "", err
		}
		cur, etag, err = f.x.store.GetStatus(ctx, env.JobID)
		if err != nil && !errors.Is(err, storage.ErrNotFound) {
			return "", err
		}
	}
	return "", fmt.Errorf("finalizer %s: too many concurrent claims", env.JobID)
}

// BatchStatus is a batch's live state: its record plus counts read from its shards.
type BatchStatus struct {
	BatchID   string            `json:"batch_id"`
	ParentID  string            `json:"parent_id,omitempty"`
	State     record.BatchState `json:"state"`
	Total     int               `json:"total"`
	Enqueued  int               `json:"enqueued"`
	Succeeded int               `json:"succeeded"`
	Failed    int               `json:"failed"`
	// Pending counts children that have not ended (queued, running or retrying).
	Pending int `json:"pending"`
	// Running counts children whose status says running or retrying; -1 unless asked
	// for (it reads every pending child's status).
	Running         int               `json:"running"`
	FailurePolicy   string            `json:"failure_policy"`
	AllowedFailures int               `json:"allowed_failures,omitempty"`
	FinalizerJobID  string            `json:"finalizer_job_id,omitempty"`
	Finalizer       *record.Status    `json:"finalizer,omitempty"`
	CreatedAt       time.Time         `json:"created_at"`
	FinishedAt      time.Time         `json:"finished_at,omitzero"`
	Meta            map[string]string `json:"meta,omitempty"`
	Record          *record.Batch     `json:"-"`
	shards          []*record.BatchShard
}

// BatchStatusOptions tune Client.Batch.
type BatchStatusOptions struct {
	// CountRunning reads the status of every pending child to count the running ones.
	CountRunning bool
}

// Batch returns a batch's live status (ErrNotFound wrapped when there is no such batch).
func (c *Client) Batch(ctx context.Context, batchID string, opts *BatchStatusOptions) (*BatchStatus, error) {
	b, _, err := c.store.GetBatch(ctx, batchID)
	if err != nil {
		return nil, fmt.Errorf("nightshift: %w", err)
	}
	bs := &BatchStatus{
		BatchID: b.BatchID, ParentID: b.ParentID, State: b.State, Total: b.Total, Enqueued: b.Enqueued,
		Running: -1, FailurePolicy: b.FailurePolicy, AllowedFailures: b.AllowedFailures,
		CreatedAt: b.CreatedAt, FinishedAt: b.FinishedAt, Meta: b.Meta, Record: b,
	}
	bs.shards = make([]*record.BatchShard, b.Shards)
	err = c.each(ctx, b.Shards, func(ctx context.Context, s int) error {
		sh, _, err := c.store.GetBatchShard(ctx, batchID, s)
		if errors.Is(err, storage.ErrNotFound) {
			sh, err = &record.BatchShard{BatchID: batchID, Shard: s, Size: b.ShardLen(s)}, nil
		}
		bs.shards[s] = sh
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("nightshift: batch %s: %w", batchID, err)
	}
	for _, sh := range bs.shards {
		d, f := sh.Counts()
		bs.Succeeded += d - f
		bs.Failed += f
	}
	bs.Pending = b.Total - bs.Succeeded - bs.Failed
	if b.Finalizer != nil {
		bs.FinalizerJobID = b.Finalizer.JobID
		if st, _, err := c.store.GetStatus(ctx, b.Finalizer.JobID); err == nil {
			bs.Finalizer = st
		}
	}
	if opts != nil && opts.CountRunning {
		var mu sync.Mutex
		running := 0
		err := c.each(ctx, b.Total, func(ctx context.Context, i int) error {
			if s, pos := b.ShardOf(i); bs.shards[s].Has(pos) {
				return nil
			}
			st, _, err := c.store.GetStatus(ctx, record.ChildJobID(batchID, i))
			if errors.Is(err, storage.ErrNotFound) {
				return nil
			}
			if err != nil {
				return err
			}
			if st.State == record.StateRunning || st.State == record.StateRetrying {
				mu.Lock()
				running++
				mu.Unlock()
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("nightshift: batch %s: %w", batchID, err)
		}
		bs.Running = running
	}
	return bs, nil
}

// BatchChild is one child's outcome as a finalizer (or anyone) reads it.
type BatchChild struct {
	Index int          `json:"index"`
	JobID string       `json:"job_id"`
	State record.State `json:"state"`
	// ContentType and Result hold a succeeded child's result (JSON or bytes).
	ContentType string          `json:"content_type,omitempty"`
	Result      json.RawMessage `json:"result,omitempty"`
	// Error is a failed child's last error.
	Error string `json:"error,omitempty"`
}

// BatchChildren reads every child's status and result, in index order. Children that have
// no status yet (not run) have State "queued".
func (c *Client) BatchChildren(ctx context.Context, batchID string) ([]BatchChild, error) {
	b, _, err := c.store.GetBatch(ctx, batchID)
	if err != nil {
		return nil, fmt.Errorf("nightshift: %w", err)
	}
	out := make([]BatchChild, b.Total)
	err = c.each(ctx, b.Total, func(ctx context.Context, i int) error {
		id := record.ChildJobID(batchID, i)
		ch := BatchChild{Index: i, JobID: id, State: record.StateQueued}
		st, _, err := c.store.GetStatus(ctx, id)
		switch {
		case errors.Is(err, storage.ErrNotFound):
		case err != nil:
			return err
		default:
			ch.State, ch.Error = st.State, st.LastError
			if st.State == record.StateSucceeded && st.Result != nil {
				ct, data, err := c.store.GetResult(ctx, st)
				if err != nil {
					return err
				}
				ch.ContentType, ch.Result = ct, data
			}
		}
		out[i] = ch
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("nightshift: children of batch %s: %w", batchID, err)
	}
	return out, nil
}

// BatchChildren reads the children of the running job's batch (a finalizer's, or one the
// job names); see Client.BatchChildren.
func BatchChildren(ctx context.Context, batchID string) ([]BatchChild, error) {
	jc := jobFromContext(ctx)
	if jc == nil {
		return nil, errors.New("nightshift: BatchChildren needs the context of a running job; outside jobs use Client.BatchChildren")
	}
	if jc.client == nil {
		return nil, errors.New("nightshift: BatchChildren needs a client; this job runs without one (nightshifttest: set WorkOptions.Client)")
	}
	return jc.client.BatchChildren(ctx, batchID)
}

// each calls fn for 0 … n-1 with at most ClientOptions.Concurrency calls at once and
// returns the first error.
func (c *Client) each(ctx context.Context, n int, fn func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sem := make(chan struct{}, c.opts.Concurrency)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for i := 0; i < n; i++ {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := fn(ctx, i); err != nil {
				mu.Lock()
				if first == nil {
					first = err
					cancel()
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		first = ctx.Err()
	}
	return first
}
