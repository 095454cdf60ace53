package storage

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/nightshift-jobs/nightshift/internal/store"
)

// UniqueLock is the lock a dedupe key holds while its job is pending or running:
// <unique container>/<sha256 of the key>.json. It is created with If-None-Match: *, so
// exactly one enqueue wins it; the executor deletes it (If-Match) when the job ends, and an
// enqueue that finds it held by an ended job takes it over (If-Match).
type UniqueLock struct {
	Key       string    `json:"key"`
	JobID     string    `json:"job_id"`
	CreatedAt time.Time `json:"created_at"`
}

// UniqueLockBlob is the blob name of a dedupe key's lock.
func UniqueLockBlob(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:]) + ".json"
}

// GetUniqueLock reads a dedupe key's lock and its ETag (ErrNotFound wrapped when free).
func (c *Clients) GetUniqueLock(ctx context.Context, key string) (*UniqueLock, ETag, error) {
	var l UniqueLock
	etag, err := c.GetJSON(ctx, c.Layout.UniqueContainer(), UniqueLockBlob(key), &l)
	if err != nil {
		return nil, "", fmt.Errorf("lock of dedupe key %q: %w", key, err)
	}
	return &l, etag, nil
}

// PutUniqueLock writes a dedupe key's lock: with etag "" only when the key is free (a lost
// race gives an error for which IsConflict is true), else only over that version.
func (c *Clients) PutUniqueLock(ctx context.Context, l *UniqueLock, etag ETag) (ETag, error) {
	return c.PutJSON(ctx, c.Layout.UniqueContainer(), UniqueLockBlob(l.Key), l, etag)
}

// DeleteUniqueLock frees a dedupe key if its lock is still at etag. It reports whether it
// deleted it; a lock that changed or is gone is left alone.
func (c *Clients) DeleteUniqueLock(ctx context.Context, key string, etag ETag) (bool, error) {
	err := c.Store().Delete(ctx, c.Layout.UniqueContainer(), UniqueLockBlob(key), store.DeleteOptions{IfMatch: store.ETag(etag)})
	switch {
	case err == nil:
		return true, nil
	case IsConflict(err) || IsNotFound(err):
		return false, nil
	}
	return false, fmt.Errorf("free dedupe key %q: %w", key, err)
}
