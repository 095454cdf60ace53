package nightshift

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nightshift-jobs/nightshift/internal/store"
	"github.com/nightshift-jobs/nightshift/storage"
)

// The cancel journal, <unique container>/cancels.json, lists recent cancellations (job id
// and when). Client.Cancel adds the id before it writes the cancelled status; each handler
// reads the journal at most once per CancelJournalCheck. A first delivery of a job (dequeue count
// 1, attempt 1, first life) runs without reading its status unless the journal names it,
// so a cancellation stops a queued job from starting once the journal copy of the
// instance is fresh: within CancelJournalCheck (docs/semantics.md, "The write path").

// CancelJournalCheck is how long a handler answers "cancelled?" for a first delivery from its
// copy of the cancel journal: a job cancelled longer ago than this before its first
// delivery does not start.
const CancelJournalCheck = 5 * time.Second

// cancelJournalKeep is how long a cancellation stays in the journal: a queue message lives
// 7 days; a job due later waits in the durable schedule, whose queued record is read
// first (its message carries no status_etag).
const cancelJournalKeep = 8 * 24 * time.Hour

// cancelJournalMax bounds the journal; the oldest entries go first. A job whose entry was
// dropped and that starts anyway is caught by its end write (its end is not recorded).
const cancelJournalMax = 2000

// cancelsBlob names the cancel journal in the unique container.
const cancelsBlob = "cancels.json"

// cancelJournal is the journal record: cancelled job ids and when.
type cancelJournal struct {
	Jobs map[string]time.Time `json:"jobs"`
}

func readCancels(ctx context.Context, c *storage.Clients) (*cancelJournal, store.ETag, error) {
	j := &cancelJournal{}
	data, props, err := c.Store().Get(ctx, c.Layout.UniqueContainer(), cancelsBlob, 4<<20)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return nil, "", err
	default:
		if err := json.Unmarshal(data, j); err != nil {
			return nil, "", fmt.Errorf("%s: %w", cancelsBlob, err)
		}
	}
	if j.Jobs == nil {
		j.Jobs = map[string]time.Time{}
	}
	return j, props.ETag, nil
}

// journalCancel adds jobID to the cancel journal at now, dropping entries older than
// cancelJournalKeep and the oldest beyond cancelJournalMax.
func journalCancel(ctx context.Context, c *storage.Clients, jobID string, now time.Time) error {
	sl := &slots{s: c.Store(), container: c.Layout.UniqueContainer()}
	for range 20 {
		j, etag, err := readCancels(ctx, c)
		if err != nil {
			return fmt.Errorf("cancel journal: %w", err)
		}
		j.Jobs[jobID] = now
		j.prune(now)
		data, err := json.Marshal(j)
		if err != nil {
			return err
		}
		err = sl.put(ctx, cancelsBlob, data, store.PutOptions{ContentType: "application/json", IfMatch: etag, IfNoneMatchAny: etag == ""})
		if err == nil {
			return nil
		}
		if !errors.Is(err, store.ErrConflict) {
			return fmt.Errorf("cancel journal: %w", err)
		}
	}
	return fmt.Errorf("cancel journal: too many concurrent writers")
}

func (j *cancelJournal) prune(now time.Time) {
	for id, at := range j.Jobs {
		if now.Sub(at) > cancelJournalKeep {
			delete(j.Jobs, id)
		}
	}
	for len(j.Jobs) > cancelJournalMax {
		oldest, first := "", time.Time{}
		for id, at := range j.Jobs {
			if oldest == "" || at.Before(first) {
				oldest, first = id, at
			}
		}
		delete(j.Jobs, oldest)
	}
}

// cancelWatch is a handler's copy of the cancel journal, read at most once per check.
type cancelWatch struct {
	mu    sync.Mutex
	cur   *cancelJournal
	read  time.Time
	check time.Duration
}

// mayBeCancelled reports whether the job may have been cancelled, so that its delivery
// must read its status: when the journal names it, or when the journal cannot be read
// (no journal storage, a failed read: the delivery reads the status, as it always did).
func (w *cancelWatch) mayBeCancelled(ctx context.Context, c *storage.Clients, jobID string) bool {
	if c == nil || c.Store() == nil {
		return true
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.cur == nil || time.Since(w.read) >= w.check {
		j, _, err := readCancels(ctx, c)
		if err != nil {
			return true
		}
		w.cur, w.read = j, time.Now()
	}
	_, ok := w.cur.Jobs[jobID]
	return ok
}
