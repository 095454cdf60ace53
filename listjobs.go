package nightshift

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nightshift-jobs/nightshift/internal/store"
	"github.com/nightshift-jobs/nightshift/record"
	"github.com/nightshift-jobs/nightshift/storage"
)

// ErrBadCursor is returned (wrapped) by JobsPage for a cursor it did not hand out.
var ErrBadCursor = errors.New("nightshift: bad cursor")

// JobFilter selects jobs for ListJobs and JobsPage. Zero fields match everything.
type JobFilter struct {
	// State keeps jobs in this state.
	State record.State
	// Kind keeps jobs of this kind.
	Kind string
	// Queue keeps jobs enqueued on this queue.
	Queue string
	// Batch keeps the children and the finalizer of this batch.
	Batch string
	// Since keeps jobs whose status changed at or after this time.
	Since time.Time
	// Until keeps jobs whose status changed before this time.
	Until time.Time
	// Limit bounds the number of jobs returned; default 50, newest first.
	Limit int
	// Cursor continues a listing where the page that returned it as JobPage.Next ended
	// (with the same filter).
	Cursor string
	// Scan lists the whole status container and reads the newest records instead of
	// asking the index. Use it for records written before the index existed (or run
	// `nightshift jobs reindex` once); it costs a listing call per 5,000 records.
	Scan bool
}

// JobPage is one page of JobsPage.
type JobPage struct {
	// Jobs are the page's status records, most recently updated first.
	Jobs []*record.Status
	// Next continues the listing (JobFilter.Cursor); "" after the last page.
	Next string
}

// indexed reports whether f names a field the index serves.
func (f *JobFilter) indexed() bool {
	return f.State != "" || f.Kind != "" || f.Queue != "" || f.Batch != "" || !f.Since.IsZero() || !f.Until.IsZero()
}

// ListJobs returns the status records matching f, most recently updated first (the
// first page of JobsPage).
func (c *Client) ListJobs(ctx context.Context, f JobFilter) ([]*record.Status, error) {
	p, err := c.JobsPage(ctx, f)
	return p.Jobs, err
}

// JobsPage returns one page of the status records matching f, most recently updated
// first, and a cursor to the next.
//
// A filter on state, kind, queue, batch or time asks the status records' index tags
// (Find Blobs by Tags, docs/storage-layout.md): one call per 5,000 matches, then reads
// of the matching records the page returns, whatever the number of jobs. The index is
// eventually consistent in Azure (a write shows within seconds), and each record read is
// checked against f, so a job that has just changed state may be missing but is never
// listed in the wrong state. An empty filter, and Scan, list the container instead (a
// call per 5,000 records) and read the newest records.
func (c *Client) JobsPage(ctx context.Context, f JobFilter) (JobPage, error) {
	if f.Limit <= 0 {
		f.Limit = 50
	}
	after, err := parseCursor(f.Cursor)
	if err != nil {
		return JobPage{}, err
	}
	var items []statusBlob
	if f.indexed() && !f.Scan {
		items, err = c.findStatusBlobs(ctx, f, after)
	}
	if !f.indexed() || f.Scan || errors.Is(err, storage.ErrNoIndex) || errors.Is(err, store.ErrForbidden) {
		// No index, or the credential may not search it: the listing still answers.
		items, err = c.listStatusBlobs(ctx, f.Since)
	}
	if err != nil {
		return JobPage{}, err
	}
	sortStatusBlobs(items)
	if after != nil {
		items = slices.DeleteFunc(items, func(b statusBlob) bool { return !after.before(b) })
	}
	return c.readPage(ctx, f, items)
}

// readPage reads items in order, in chunks, until Limit records match f.
func (c *Client) readPage(ctx context.Context, f JobFilter, items []statusBlob) (JobPage, error) {
	var page JobPage
	next := 0
	for next < len(items) && len(page.Jobs) < f.Limit {
		end := next + min(c.opts.Concurrency, f.Limit-len(page.Jobs), len(items)-next) // no overflow at Limit math.MaxInt
		sts, errs := c.readStatuses(ctx, items[next:end])
		n, err := f.appendMatches(&page.Jobs, sts, errs)
		if err != nil {
			return JobPage{}, err
		}
		next += n
	}
	if next < len(items) {
		page.Next = items[next-1].cursor()
	}
	return page, nil
}

// statusBlob is one status record of a listing or an index search: its job id and when
// it was written (whole seconds).
type statusBlob struct {
	id  string
	mod time.Time
}

// cursor encodes b's place in the order, for JobFilter.Cursor.
func (b statusBlob) cursor() string {
	return base64.RawURLEncoding.EncodeToString([]byte("1:" + strconv.FormatInt(b.mod.Unix(), 10) + ":" + b.id))
}

func parseCursor(s string) (*statusBlob, error) {
	if s == "" {
		return nil, nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(s)
	parts := strings.SplitN(string(raw), ":", 3)
	if err != nil || len(parts) != 3 || parts[0] != "1" || parts[2] == "" {
		return nil, fmt.Errorf("%w %q", ErrBadCursor, s)
	}
	sec, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil {
		return nil, fmt.Errorf("%w %q", ErrBadCursor, s)
	}
	return &statusBlob{id: parts[2], mod: time.Unix(sec, 0).UTC()}, nil
}

// before reports whether a comes before b in the listing order.
func (a *statusBlob) before(b statusBlob) bool {
	if !a.mod.Equal(b.mod) {
		return a.mod.After(b.mod)
	}
	return a.id > b.id
}

// findStatusBlobs asks the index for the records f selects (after the cursor's time).
func (c *Client) findStatusBlobs(ctx context.Context, f JobFilter, after *statusBlob) ([]statusBlob, error) {
	q := storage.StatusQuery{State: f.State, Kind: f.Kind, Queue: f.Queue, Batch: f.Batch, Since: f.Since, Until: f.Until}
	if after != nil && (q.Until.IsZero() || after.mod.Before(q.Until)) {
		q.Until = after.mod // the tag range is inclusive: the cursor's second stays in
	}
	var items []statusBlob
	for it, err := range c.store.FindStatuses(ctx, q) {
		if err != nil {
			if errors.Is(err, storage.ErrNoIndex) || errors.Is(err, store.ErrForbidden) {
				return nil, err
			}
			return nil, fmt.Errorf("nightshift: list jobs: %w", err)
		}
		items = append(items, statusBlob{it.JobID, it.Updated})
	}
	return items, nil
}

// listStatusBlobs lists the status records modified at or after since (all when since is
// zero), in listing order.
func (c *Client) listStatusBlobs(ctx context.Context, since time.Time) ([]statusBlob, error) {
	var items []statusBlob
	for it, err := range c.store.Store().List(ctx, c.store.Layout.StatusContainer(), "") {
		if err != nil {
			return nil, fmt.Errorf("nightshift: list jobs: %w", err)
		}
		if b, ok := statusBlobOf(it, since); ok {
			items = append(items, b)
		}
	}
	return items, nil
}

// statusBlobOf returns the listing entry it as a status record, and false when it is not
// a status record or was modified before since.
func statusBlobOf(it store.Item, since time.Time) (statusBlob, bool) {
	if !strings.HasSuffix(it.Name, ".json") {
		return statusBlob{}, false
	}
	mod := it.LastModified.Truncate(time.Second)
	// Blob times have 1 s precision; compare at that grain.
	if !since.IsZero() && mod.Before(since.Truncate(time.Second)) {
		return statusBlob{}, false
	}
	return statusBlob{strings.TrimSuffix(it.Name, ".json"), mod}, true
}

// sortStatusBlobs orders items most recently modified first, then by job id descending.
func sortStatusBlobs(items []statusBlob) {
	slices.SortStableFunc(items, func(a, b statusBlob) int {
		switch {
		case a.before(b):
			return -1
		case b.before(a):
			return 1
		}
		return 0
	})
}

// readStatuses reads the status records of items concurrently; the i-th record and
// error belong to items[i].
func (c *Client) readStatuses(ctx context.Context, items []statusBlob) ([]*record.Status, []error) {
	sts := make([]*record.Status, len(items))
	errs := make([]error, len(items))
	var wg sync.WaitGroup
	for i := range items {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sts[i], _, errs[i] = c.store.GetStatus(ctx, items[i].id)
		}()
	}
	wg.Wait()
	return sts, errs
}

// appendMatches appends to out, in order, the records of sts that match the filter, until
// out holds Limit records, and returns how many of sts it went through. A record deleted
// since the listing is skipped; any other read error met before the limit is returned.
func (f *JobFilter) appendMatches(out *[]*record.Status, sts []*record.Status, errs []error) (int, error) {
	for i, st := range sts {
		if len(*out) == f.Limit {
			return i, nil
		}
		if errs[i] != nil {
			if errors.Is(errs[i], storage.ErrNotFound) {
				continue
			}
			return 0, fmt.Errorf("nightshift: list jobs: %w", errs[i])
		}
		if f.matches(st) {
			*out = append(*out, st)
		}
	}
	return len(sts), nil
}

// matches says whether st passes the filter's conditions.
func (f *JobFilter) matches(st *record.Status) bool {
	return (f.State == "" || st.State == f.State) && (f.Kind == "" || st.Kind == f.Kind) &&
		(f.Queue == "" || st.Queue == f.Queue) && (f.Batch == "" || st.BatchID == f.Batch) &&
		(f.Since.IsZero() || !st.UpdatedAt.Before(f.Since)) && (f.Until.IsZero() || st.UpdatedAt.Before(f.Until))
}

// ReindexJobs gives every status record written before the index (without index tags)
// its tags, so that filtered listings find it: it lists the status container once and
// rewrites each untagged record with its own bytes and its tags, conditionally on the
// version read (storage.Clients.ReindexStatus). It returns how many records it listed
// and how many it rewrote; it is safe to run while jobs run, and again.
func (c *Client) ReindexJobs(ctx context.Context) (listed, rewrote int, err error) {
	items, err := c.listUntagged(ctx, &listed)
	if err != nil {
		return listed, 0, err
	}
	rewrote, err = c.reindexEach(ctx, items, c.store.ReindexStatus)
	if err != nil {
		return listed, rewrote, fmt.Errorf("nightshift: reindex: %w", err)
	}
	return listed, rewrote, nil
}

// reindexEach runs reindex on each id, at most Concurrency at once, and returns how many
// it rewrote and every error.
func (c *Client) reindexEach(ctx context.Context, ids []string, reindex func(context.Context, string) (bool, error)) (int, error) {
	var mu sync.Mutex
	var errs []error
	rewrote := 0
	sem := make(chan struct{}, c.opts.Concurrency)
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			wrote, err := reindex(ctx, id)
			mu.Lock()
			defer mu.Unlock()
			if wrote {
				rewrote++
			}
			if err != nil {
				errs = append(errs, err)
			}
		}()
	}
	wg.Wait()
	return rewrote, errors.Join(errs...)
}

// listUntagged lists the status records whose listing shows no index tags.
func (c *Client) listUntagged(ctx context.Context, listed *int) ([]string, error) {
	var ids []string
	for it, err := range c.store.Store().List(ctx, c.store.Layout.StatusContainer(), "") {
		if err != nil {
			return nil, fmt.Errorf("nightshift: reindex: %w", err)
		}
		id, ok := strings.CutSuffix(it.Name, ".json")
		if !ok {
			continue
		}
		*listed++
		if it.TagCount == 0 {
			ids = append(ids, id)
		}
	}
	return ids, nil
}
