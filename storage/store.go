package storage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nightshift-jobs/nightshift/internal/store"
	"github.com/nightshift-jobs/nightshift/record"
)

// ErrNotFound is returned when a record does not exist.
var ErrNotFound = errors.New("not found")

// ETag identifies a version of a record for conditional writes; "" means "must not exist".
// It is the storage boundary's ETag (internal/store), so a record's ETag conditions any
// write or delete through Clients.Store.
type ETag = store.ETag

// GetStatus reads a job's status record and its ETag. It returns ErrNotFound (wrapped) when
// there is none.
func (c *Clients) GetStatus(ctx context.Context, jobID string) (*record.Status, ETag, error) {
	var st record.Status
	etag, err := c.GetJSON(ctx, c.Layout.StatusContainer(), StatusBlob(jobID), &st)
	if err != nil {
		return nil, "", fmt.Errorf("status of job %s: %w", jobID, err)
	}
	return &st, etag, nil
}

// PutStatus writes a status record, the result of a Transition, conditionally: with etag "" only if none exists
// (If-None-Match: *), else only if it is still at etag (If-Match). A lost race returns an
// error for which IsConflict is true. The record's index tags (StatusTags) go in the
// same request, so they change only with the write that wins.
func (c *Clients) PutStatus(ctx context.Context, st *record.Status, etag ETag) (ETag, error) {
	if st.UpdatedAt.IsZero() {
		st.UpdatedAt = time.Now().UTC()
	}
	return c.putJSON(ctx, c.Layout.StatusContainer(), StatusBlob(st.JobID), st, etag, StatusTags(st))
}

// UpdateStatus applies change (a Transition's Apply) to the job's current status (nil when there is none) and
// writes the result conditionally, re-reading and retrying when another writer got there
// first. change returns nil to write nothing. It returns the status as stored afterwards
// and whether this call wrote it.
func (c *Clients) UpdateStatus(ctx context.Context, jobID string, change func(cur *record.Status) *record.Status) (*record.Status, bool, error) {
	for try := 0; ; try++ {
		cur, etag, err := c.GetStatus(ctx, jobID)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return nil, false, err
		}
		next := change(cur)
		if next == nil {
			return cur, false, nil
		}
		next.UpdatedAt = time.Now().UTC()
		if _, err := c.PutStatus(ctx, next, etag); err != nil {
			if IsConflict(err) && try < 20 {
				continue
			}
			return nil, false, fmt.Errorf("write status of job %s: %w", jobID, err)
		}
		return next, true, nil
	}
}

// PutResult stores a job's result blob once: the first writer wins (If-None-Match: *), so
// a job that ran twice keeps one result. It reports whether this call created it.
func (c *Clients) PutResult(ctx context.Context, jobID, contentType string, data []byte) (bool, error) {
	data, err := c.sealBlob(ctx, c.Layout.ResultsContainer(), ResultBlob(jobID), data)
	if err != nil {
		return false, fmt.Errorf("write result of job %s: %w", jobID, err)
	}
	_, err = c.upload(ctx, c.Layout.ResultsContainer(), ResultBlob(jobID), data, store.PutOptions{ContentType: contentType, IfNoneMatchAny: true})
	if err != nil {
		if IsConflict(err) {
			return false, nil
		}
		return false, fmt.Errorf("write result of job %s: %w", jobID, err)
	}
	return true, nil
}

// GetResult reads a job's result: inline from the status record, or from its blob.
func (c *Clients) GetResult(ctx context.Context, st *record.Status) (contentType string, data []byte, err error) {
	if st.Result == nil {
		return "", nil, fmt.Errorf("job %s has no result (state %s): %w", st.JobID, st.State, ErrNotFound)
	}
	r := st.Result
	switch {
	case r.JSON != nil:
		return r.ContentType, r.JSON, nil
	case r.Blob != "":
		data, _, err := c.download(ctx, c.Layout.ResultsContainer(), r.Blob)
		if err != nil {
			return "", nil, fmt.Errorf("result of job %s: %w", st.JobID, err)
		}
		return r.ContentType, data, nil
	default:
		return r.ContentType, r.Bytes, nil
	}
}

// GetDeadLetter reads a dead-letter record and its ETag.
func (c *Clients) GetDeadLetter(ctx context.Context, deadID string) (*record.DeadLetter, ETag, error) {
	var d record.DeadLetter
	etag, err := c.GetJSON(ctx, c.Layout.DeadLettersContainer(), record.DeadLetterBlob(deadID), &d)
	if err != nil {
		return nil, "", fmt.Errorf("dead letter %s: %w", deadID, err)
	}
	return &d, etag, nil
}

// PutDeadLetter writes a dead-letter record conditionally (see PutStatus for etag), with
// its index tags (DeadTags) in the same Put.
func (c *Clients) PutDeadLetter(ctx context.Context, d *record.DeadLetter, etag ETag) (ETag, error) {
	return c.putJSON(ctx, c.Layout.DeadLettersContainer(), record.DeadLetterBlob(d.DeadID), d, etag, DeadTags(d))
}

// ListDeadLetters returns the ids of all dead-letter records, in name order.
func (c *Clients) ListDeadLetters(ctx context.Context) ([]string, error) {
	return c.listNames(ctx, c.Layout.DeadLettersContainer(), ".json")
}

// ListStatuses returns the job ids that have a status record, in name order (time order for
// generated ids, which are UUIDv7).
func (c *Clients) ListStatuses(ctx context.Context) ([]string, error) {
	return c.listNames(ctx, c.Layout.StatusContainer(), ".json")
}

func (c *Clients) listNames(ctx context.Context, container, suffix string) ([]string, error) {
	var out []string
	for it, err := range c.Store().List(ctx, container, "") {
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", container, err)
		}
		out = append(out, strings.TrimSuffix(it.Name, suffix))
	}
	return out, nil
}

// Enqueue puts message text on a queue, invisible for delay (at most 7 days), with the
// 7-day time to live (the service default, or ttl when positive). It returns the message id.
func (c *Clients) Enqueue(ctx context.Context, queue string, text []byte, delay, ttl time.Duration) (string, error) {
	s := c.Store()
	id, err := s.Enqueue(ctx, queue, string(text), delay, ttl)
	if err != nil && errors.Is(err, store.ErrNotFound) && slices.Contains(c.Layout.Queues(), queue) {
		// One of nightshift's own queues was deleted (or never made): make it and try
		// again. Any other queue is never created here.
		if cerr := s.CreateQueue(ctx, queue); cerr != nil {
			return "", fmt.Errorf("enqueue on %s: the queue is missing and could not be created: %w", queue, cerr)
		}
		id, err = s.Enqueue(ctx, queue, string(text), delay, ttl)
	}
	if err != nil {
		return "", fmt.Errorf("enqueue on %s: %w", queue, err)
	}
	return id, nil
}

// GetJSON reads the JSON blob container/name into v and returns its ETag. A missing blob
// gives an error wrapping ErrNotFound. A sealed blob is opened (see Clients.Sealer).
func (c *Clients) GetJSON(ctx context.Context, container, name string, v any) (ETag, error) {
	data, etag, err := c.download(ctx, container, name)
	if err != nil {
		return "", err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return "", fmt.Errorf("%s/%s is not valid JSON: %w", container, name, err)
	}
	return etag, nil
}

// download reads container/name whole, opening it when it is sealed.
func (c *Clients) download(ctx context.Context, container, name string) ([]byte, ETag, error) {
	raw, props, err := c.Store().Get(ctx, container, name, 0)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, "", fmt.Errorf("%s/%s: %w", container, name, ErrNotFound)
		}
		return nil, "", fmt.Errorf("read %s/%s: %w", container, name, err)
	}
	data, err := c.openBlob(ctx, container, name, raw)
	if err != nil {
		return nil, "", err
	}
	return data, props.ETag, nil
}

// PutJSON writes v as the JSON blob container/name, conditionally: with etag "" only if
// the blob does not exist (If-None-Match: *), else only over that version (If-Match). A
// lost race gives an error for which IsConflict is true. It returns the new ETag. With a
// Sealer the blob is sealed for container/name.
func (c *Clients) PutJSON(ctx context.Context, container, name string, v any, etag ETag) (ETag, error) {
	return c.putJSON(ctx, container, name, v, etag, nil)
}

// putJSON is PutJSON with index tags.
func (c *Clients) putJSON(ctx context.Context, container, name string, v any, etag ETag, tags map[string]string) (ETag, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	if data, err = c.sealBlob(ctx, container, name, data); err != nil {
		return "", err
	}
	opts := store.PutOptions{ContentType: "application/json", IfMatch: etag, IfNoneMatchAny: etag == ""}
	newETag, err := c.uploadTagged(ctx, container, name, data, opts, tags)
	if err != nil {
		return "", fmt.Errorf("write %s/%s: %w", container, name, err)
	}
	return newETag, nil
}

// upload writes a blob. When one of nightshift's own containers is missing (a fresh
// Azurite, `func start` before anything created the layout) it is made and the write
// tried again, as the host makes missing poison queues; other containers are never
// created here. (A conditional write to a missing blob is a conflict, not not-found, so
// not-found here means the container.)
func (c *Clients) upload(ctx context.Context, container, name string, data []byte, opts store.PutOptions) (store.ETag, error) {
	s := c.Store()
	etag, err := s.Put(ctx, container, name, data, opts)
	if err == nil || !errors.Is(err, store.ErrNotFound) || !slices.Contains(c.Layout.Containers(), container) {
		return etag, err
	}
	if cerr := s.CreateContainer(ctx, container); cerr != nil {
		return "", fmt.Errorf("container %s is missing and could not be created: %w", container, cerr)
	}
	return s.Put(ctx, container, name, data, opts)
}
