package nightshift

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nightshift-jobs/nightshift/record"
	"github.com/nightshift-jobs/nightshift/storage"
)

// Checkpoints (docs/semantics.md#checkpoints): a long job saves its progress state with
// Checkpoint and reads it back with Resume on its next attempt, redelivery or replay. The
// state is one blob per job (storage.CheckpointBlob in the payloads container), written
// at most once per progress interval and always at the end of the attempt. A redelivery
// of a job that checkpointed under the message being redelivered is renewed (the
// checkpoints feature): it goes back on its queue as a fresh message of the same attempt,
// so interruptions that make progress do not use up the host's maxDequeueCount.

// ErrCheckpointTooLarge is returned (wrapped) by Checkpoint for a state whose JSON is over
// record.MaxCheckpointBytes.
var ErrCheckpointTooLarge = errors.New("nightshift: checkpoint too large")

// Checkpoint saves v (encoded as JSON, at most record.MaxCheckpointBytes) as the running
// job's progress state, replacing the last one. Writes are throttled like Job.Progress:
// the first is written at once, later ones at most once per ProgressInterval (the latest
// value wins), and the last value is always written when the attempt ends, whatever its
// outcome. A crash loses at most the values saved since the last write. It returns an
// error for a value that does not encode or is too large, outside a running job, and
// when a write made now fails; a failed trailing write is logged.
func Checkpoint(ctx context.Context, v any) error {
	cp := checkpointerOf(ctx)
	if cp == nil {
		return errors.New("nightshift: Checkpoint needs the context of a running job")
	}
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("nightshift: encode checkpoint: %w", err)
	}
	if len(data) > record.MaxCheckpointBytes {
		return fmt.Errorf("%w: %d bytes, the most is %d", ErrCheckpointTooLarge, len(data), record.MaxCheckpointBytes)
	}
	return cp.save(ctx, data)
}

// Resume reads the job's last saved checkpoint into v (a pointer) and reports whether
// there was one: the state saved by an earlier attempt, delivery or life of the job, or by
// this attempt. A job that never checkpointed, or whose checkpoint was deleted when it
// succeeded, finds none.
func Resume(ctx context.Context, v any) (bool, error) {
	cp := checkpointerOf(ctx)
	if cp == nil {
		return false, errors.New("nightshift: Resume needs the context of a running job")
	}
	data, err := cp.latest(ctx)
	if err != nil || data == nil {
		return false, err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return false, fmt.Errorf("nightshift: decode checkpoint: %w", err)
	}
	return true, nil
}

func checkpointerOf(ctx context.Context) *checkpointer {
	if jc := jobFromContext(ctx); jc != nil {
		return jc.checkpoint
	}
	return nil
}

// checkpointer keeps one attempt's checkpoint: it reads the record on first use and
// writes it conditionally on the version it last saw.
type checkpointer struct {
	store     *storage.Clients // nil: the state is kept in memory only (nightshifttest.Work)
	jobID     string
	replay    int
	attempt   int
	messageID string
	dequeue   int
	interval  time.Duration
	log       *slog.Logger
	used      func() // the job has a checkpoint to delete at its end

	mu        sync.Mutex
	loaded    bool
	cur       *record.Checkpoint
	etag      storage.ETag
	pending   json.RawMessage // saved, not yet written
	lastWrite time.Time
	timer     *time.Timer
	closed    bool
	writes    int
}

// newCheckpointer returns the checkpointer of attempt a on the executor's storage.
func (x *executor) newCheckpointer(a *attempt) *checkpointer {
	c := &checkpointer{store: x.ext, jobID: a.env.JobID, replay: a.env.Replay, attempt: a.env.Attempt,
		messageID: a.d.Meta.ID, dequeue: a.d.Meta.DequeueCount, interval: x.progressInterval, log: a.log, used: func() {}}
	for _, f := range x.features {
		if cf, ok := f.(*checkpoints); ok {
			c.used = func() { cf.used.Store(a.env.JobID, struct{}{}) }
		}
	}
	return c
}

func (c *checkpointer) save(ctx context.Context, data json.RawMessage) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return errors.New("nightshift: Checkpoint after the attempt ended")
	}
	c.pending = data
	if wait := time.Until(c.lastWrite.Add(c.interval)); wait > 0 {
		if c.timer == nil {
			c.timer = time.AfterFunc(wait, c.flush)
		}
		return nil
	}
	return c.write(ctx)
}

// flush writes the pending state once the interval has passed.
func (c *checkpointer) flush() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.timer = nil
	if c.closed || c.pending == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), recordTimeout)
	defer cancel()
	if err := c.write(ctx); err != nil {
		c.log.Warn("could not write checkpoint", "error", err.Error())
	}
}

// stop ends the attempt's checkpoints: a pending state is written now.
func (c *checkpointer) stop(ctx context.Context) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	if c.timer != nil {
		c.timer.Stop()
		c.timer = nil
	}
	if c.pending == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer cancel()
	if err := c.write(ctx); err != nil {
		c.log.Warn("could not write the last checkpoint", "error", err.Error())
	}
}

// latest returns the newest state: saved by this attempt, or read from storage.
func (c *checkpointer) latest(ctx context.Context) (json.RawMessage, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pending != nil {
		return c.pending, nil
	}
	if err := c.load(ctx); err != nil {
		return nil, err
	}
	if c.cur == nil {
		return nil, nil
	}
	c.used()
	return c.cur.State, nil
}

// load reads the stored checkpoint once (c.mu held).
func (c *checkpointer) load(ctx context.Context) error {
	if c.loaded || c.store == nil {
		return nil
	}
	var cp record.Checkpoint
	etag, err := c.store.GetJSON(ctx, c.store.Layout.PayloadsContainer(), storage.CheckpointBlob(c.jobID), &cp)
	switch {
	case notFound(err):
		c.cur, c.etag = nil, ""
	case err != nil:
		return fmt.Errorf("nightshift: read checkpoint: %w", err)
	default:
		c.cur, c.etag = &cp, etag
	}
	c.loaded = true
	return nil
}

// write puts the pending state over the version last seen (c.mu held). A conflict (a
// duplicate delivery of the job wrote meanwhile) reads the record again and retries once.
func (c *checkpointer) write(ctx context.Context) error {
	if c.store == nil {
		c.lastWrite, c.writes = time.Now(), c.writes+1
		return nil
	}
	var err error
	for range 2 {
		if err = c.load(ctx); err != nil {
			return err
		}
		rec := c.next()
		var etag storage.ETag
		etag, err = c.store.PutJSON(ctx, c.store.Layout.PayloadsContainer(), storage.CheckpointBlob(c.jobID), rec, c.etag)
		if err == nil {
			c.cur, c.etag, c.pending, c.lastWrite = rec, etag, nil, time.Now()
			c.writes++
			c.used()
			return nil
		}
		if !storage.IsConflict(err) {
			break
		}
		c.loaded = false
	}
	return fmt.Errorf("nightshift: write checkpoint: %w", err)
}

// next is the record replacing c.cur with the pending state.
func (c *checkpointer) next() *record.Checkpoint {
	rec := &record.Checkpoint{JobID: c.jobID, Replay: c.replay, Attempt: c.attempt, MessageID: c.messageID,
		DequeueCount: c.dequeue, Seq: 1, State: c.pending, At: time.Now().UTC()}
	if c.cur != nil {
		rec.Seq = c.cur.Seq + 1
		if c.cur.Replay == c.replay && c.cur.Attempt == c.attempt {
			rec.Renewals = c.cur.Renewals
		}
	}
	return rec
}

// checkpoints is the feature of checkpointed jobs. At admission it renews a redelivery
// (host dequeue count 2 and up) of a job that checkpointed under the same message: the
// record is marked renewed (If-Match), the envelope goes back on its queue as a fresh
// message of the same attempt and this delivery ends, so the host's maxDequeueCount
// counts interruptions without progress only (at most record.MaxCheckpointRenewals
// renewals per attempt). Redeliveries of other jobs cost one read of the (missing)
// checkpoint blob. At the end a succeeded or cancelled job's checkpoint is deleted, when
// this process saw the job use one; a dead job's is kept for a replay to resume from.
type checkpoints struct {
	x    *executor
	used sync.Map // job id → struct{}: jobs whose attempts here used a checkpoint
}

func (c *checkpoints) admit(ctx context.Context, a *attempt) (outcome, bool) {
	st := c.x.ext
	if a.d.Meta.DequeueCount < 2 || st == nil || a.d.Meta.ID == "" || a.argsErr != nil {
		return outcome{}, true
	}
	var cp record.Checkpoint
	name := storage.CheckpointBlob(a.env.JobID)
	etag, err := st.GetJSON(ctx, st.Layout.PayloadsContainer(), name, &cp)
	switch {
	case notFound(err):
		return outcome{}, true
	case err != nil:
		return infraFailure(err), false
	}
	if cp.MessageID != a.d.Meta.ID || cp.Replay != a.env.Replay || cp.Attempt != a.env.Attempt || cp.Renewals >= record.MaxCheckpointRenewals {
		return outcome{}, true
	}
	cp.MessageID, cp.Renewals = "", cp.Renewals+1
	if _, err := st.PutJSON(ctx, st.Layout.PayloadsContainer(), name, &cp, etag); err != nil {
		if storage.IsConflict(err) {
			return outcome{}, true // a duplicate delivery checkpointed meanwhile: run
		}
		return infraFailure(err), false
	}
	// A crash here leaves the record renewed and this message to be redelivered, which
	// then runs (its id no longer matches): never lost.
	if err := c.x.enqueue(ctx, a.d.Queue, a.env, 0); err != nil {
		return infraFailure(err), false
	}
	a.log.Info("job renewed after an interruption with checkpoint progress", "outcome", "deferred",
		"renewals", cp.Renewals, "checkpoint_seq", cp.Seq)
	return outcome{Outcome: "deferred", Logs: []string{fmt.Sprintf("job %s checkpointed (seq %d) before delivery %d; renewed as a fresh message (renewal %d of at most %d)",
		a.env.JobID, cp.Seq, a.d.Meta.DequeueCount, cp.Renewals, record.MaxCheckpointRenewals)}}, false
}

func (c *checkpoints) ended(ctx context.Context, e jobEnd) error {
	if _, used := c.used.LoadAndDelete(e.env.JobID); !used || c.x.ext == nil {
		return nil
	}
	if e.state != record.StateSucceeded && e.state != record.StateCancelled {
		return nil
	}
	if err := c.x.ext.DeletePayload(ctx, storage.CheckpointBlob(e.env.JobID)); err != nil {
		c.x.log.Warn("could not delete checkpoint", "job_id", e.env.JobID, "error", err.Error())
	}
	return nil
}

// notFound reports whether a record read found no blob (storage's ErrNotFound, or the
// boundary's for a container not made yet).
func notFound(err error) bool {
	return errors.Is(err, storage.ErrNotFound) || storage.IsNotFound(err)
}
