package nightshift

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nightshift-jobs/nightshift/envelope"
	"github.com/nightshift-jobs/nightshift/storage"
)

// ErrDuplicate is returned (wrapped in a *DuplicateJobError) when a job is enqueued with a
// dedupe key that another pending or running job holds.
var ErrDuplicate = errors.New("a job with this dedupe key is pending or running")

// DuplicateJobError names the job holding a dedupe key.
type DuplicateJobError struct {
	Key   string
	JobID string
}

func (e *DuplicateJobError) Error() string {
	return fmt.Sprintf("dedupe key %q is held by job %s, which is pending or running; enqueue again after it ends, or ask for the existing job id", e.Key, e.JobID)
}

// Unwrap makes errors.Is(err, ErrDuplicate) true.
func (e *DuplicateJobError) Unwrap() error { return ErrDuplicate }

// UniqueLockGrace is how long a dedupe lock whose job has no status record yet counts as
// held: the enqueuer takes the lock before it puts the message on the queue, so a lock
// this young may belong to an enqueue in progress. An older one belongs to an enqueue that
// crashed, and is taken over.
const UniqueLockGrace = 2 * time.Minute

// acquireUnique takes the dedupe key's lock for env's job. It returns a
// *DuplicateJobError when another job that has not ended holds it. A lock held by an
// ended job (or by an enqueue that died before its job existed) is taken over with
// If-Match, so two enqueues racing for a free or stale key cannot both win.
func acquireUnique(ctx context.Context, store *storage.Clients, env *envelope.Envelope, now time.Time) error {
	lock := &storage.UniqueLock{Key: env.DedupeKey, JobID: env.JobID, CreatedAt: now.UTC()}
	for try := 0; try < 20; try++ {
		_, err := store.PutUniqueLock(ctx, lock, "")
		if err == nil {
			return nil
		}
		if !storage.IsConflict(err) {
			return err
		}
		cur, etag, err := store.GetUniqueLock(ctx, env.DedupeKey)
		if errors.Is(err, storage.ErrNotFound) {
			continue // freed meanwhile
		}
		if err != nil {
			return err
		}
		if cur.JobID == env.JobID {
			return nil // ours already (a resumed enqueue)
		}
		st, _, err := store.GetStatus(ctx, cur.JobID)
		var stale bool
		switch {
		case errors.Is(err, storage.ErrNotFound):
			stale = now.Sub(cur.CreatedAt) > UniqueLockGrace
		case err != nil:
			return err
		default:
			stale = st.State.Terminal()
		}
		if !stale {
			return &DuplicateJobError{Key: env.DedupeKey, JobID: cur.JobID}
		}
		if _, err := store.PutUniqueLock(ctx, lock, etag); err != nil {
			if storage.IsConflict(err) {
				continue
			}
			return err
		}
		return nil
	}
	return fmt.Errorf("dedupe key %q: too many concurrent enqueues; try again", env.DedupeKey)
}

// dedupeOutcome turns a duplicate enqueue into the holder's job id when the caller asked
// for that (EnqueueOptions.DedupeReturnExisting); other outcomes pass through.
func dedupeOutcome(env *envelope.Envelope, queue string, opts *EnqueueOptions, res *EnqueueResult, err error) (*EnqueueResult, error) {
	var dup *DuplicateJobError
	if err == nil || opts == nil || !opts.DedupeReturnExisting || !errors.As(err, &dup) {
		return res, err
	}
	return &EnqueueResult{JobID: dup.JobID, Kind: env.Kind, Queue: queue, Existing: true}, nil
}

// releaseUnique frees a dedupe key if jobID still holds it.
func releaseUnique(ctx context.Context, store *storage.Clients, key, jobID string) error {
	cur, etag, err := store.GetUniqueLock(ctx, key)
	if errors.Is(err, storage.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if cur.JobID != jobID {
		return nil
	}
	_, err = store.DeleteUniqueLock(ctx, key, etag)
	return err
}

// uniqueKeys is the dedupe-key feature's hook set: when a job's end is recorded (by its
// attempt or its dead letter), its key is freed. A failure is logged: the lock of an
// ended job is taken over by the next enqueue anyway.
type uniqueKeys struct {
	admitAll
	x *executor
}

func (u uniqueKeys) ended(ctx context.Context, e jobEnd) error {
	env := e.env
	if env.DedupeKey == "" || e.via == endRedelivery {
		return nil
	}
	if err := releaseUnique(ctx, u.x.ext, env.DedupeKey, env.JobID); err != nil {
		u.x.log.Warn("could not free dedupe key", "job_id", env.JobID, "dedupe_key", env.DedupeKey, "error", err.Error())
	}
	return nil
}
