package storage_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/nightshift-jobs/nightshift/record"
	"github.com/nightshift-jobs/nightshift/storage"
)

func TestConditionalStatusWrites(t *testing.T) {
	forBackends(t, func(t *testing.T, c *storage.Clients) {
		ctx := context.Background()
		if _, _, err := c.GetStatus(ctx, "s1"); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("want ErrNotFound, got %v", err)
		}
		etag, err := c.PutStatus(ctx, &record.Status{JobID: "s1", State: record.StateRunning, Attempt: 1}, "")
		if err != nil {
			t.Fatal(err)
		}
		// Create-only write loses to the existing record.
		if _, err := c.PutStatus(ctx, &record.Status{JobID: "s1", State: record.StateRunning}, ""); !storage.IsConflict(err) {
			t.Fatalf("want conflict, got %v", err)
		}
		if _, err := c.PutStatus(ctx, &record.Status{JobID: "s1", State: record.StateSucceeded, Attempt: 1}, etag); err != nil {
			t.Fatal(err)
		}
		// A stale ETag loses.
		if _, err := c.PutStatus(ctx, &record.Status{JobID: "s1", State: record.StateDead}, etag); !storage.IsConflict(err) {
			t.Fatalf("want conflict, got %v", err)
		}
	})
}

// Concurrent writers through UpdateStatus never lose an update.
func TestUpdateStatusConcurrent(t *testing.T) {
	forBackends(t, func(t *testing.T, c *storage.Clients) {
		ctx := context.Background()
		const writers = 8
		var wg sync.WaitGroup
		for i := 0; i < writers; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, _, err := c.UpdateStatus(ctx, "s2", func(cur *record.Status) *record.Status {
					next := &record.Status{JobID: "s2", State: record.StateRunning}
					if cur != nil {
						next.Attempt = cur.Attempt
					}
					next.Attempt++
					return next
				})
				if err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		st, _, err := c.GetStatus(ctx, "s2")
		if err != nil || st.Attempt != writers {
			t.Fatalf("attempt %d after %d increments (%v)", st.Attempt, writers, err)
		}
	})
}

func TestResultWrittenOnce(t *testing.T) {
	forBackends(t, func(t *testing.T, c *storage.Clients) {
		ctx := context.Background()
		created, err := c.PutResult(ctx, "r1", "text/plain", []byte("first"))
		if err != nil || !created {
			t.Fatal(created, err)
		}
		created, err = c.PutResult(ctx, "r1", "text/plain", []byte("second"))
		if err != nil || created {
			t.Fatal(created, err)
		}
		ct, data, err := c.GetResult(ctx, &record.Status{JobID: "r1", Result: &record.Result{Blob: "r1", ContentType: "text/plain"}})
		if err != nil || ct != "text/plain" || string(data) != "first" {
			t.Fatal(ct, string(data), err)
		}
	})
}
