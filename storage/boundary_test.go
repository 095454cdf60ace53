package storage_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"slices"
	"testing"

	"github.com/nightshift-jobs/nightshift/record"
	"github.com/nightshift-jobs/nightshift/seal"
	"github.com/nightshift-jobs/nightshift/storage"
)

// Payloads: a read is bounded (ErrTooLarge over the limit, also for a sealed payload,
// whose limit counts the opened bytes), a missing one is ErrNotFound, a delete of a
// missing one is no error.
func TestPayloadsBounded(t *testing.T) {
	t.Parallel()
	forBackends(t, func(t *testing.T, c *storage.Clients) {
		ctx := context.Background()
		data := bytes.Repeat([]byte("a"), 100)
		if err := c.PutPayload(ctx, "j1/args.json", "application/json", data); err != nil {
			t.Fatal(err)
		}
		if got, err := c.GetPayload(ctx, "j1/args.json", 100); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("at the limit: %d bytes, %v", len(got), err)
		}
		if _, err := c.GetPayload(ctx, "j1/args.json", 99); !errors.Is(err, storage.ErrTooLarge) {
			t.Fatalf("over the limit: %v", err)
		}
		if _, err := c.GetPayload(ctx, "nope/args.json", 100); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("missing: %v", err)
		}
		if err := c.DeletePayload(ctx, "j1/args.json"); err != nil {
			t.Fatal(err)
		}
		if err := c.DeletePayload(ctx, "j1/args.json"); err != nil {
			t.Fatalf("delete of a missing payload: %v", err)
		}
		if _, err := c.GetPayload(ctx, "j1/args.json", 100); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("after delete: %v", err)
		}
	})
}

// With a Sealer, records and payloads are stored sealed for their name and read back
// opened; a sealed blob without a Sealer names the settings to set.
func TestSealedBlobs(t *testing.T) {
	t.Parallel()
	key := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))
	forBackends(t, func(t *testing.T, c *storage.Clients) {
		ctx := context.Background()
		s, err := seal.FromEnv(func(k string) string {
			if k == seal.SettingLocalKeys {
				return "k1:" + key
			}
			return ""
		}, nil)
		if err != nil || s == nil {
			t.Fatal(s, err)
		}
		c.Sealer = s
		if _, err := c.PutStatus(ctx, &record.Status{JobID: "sealed", State: record.StateQueued}, ""); err != nil {
			t.Fatal(err)
		}
		raw, _, err := c.Store().Get(ctx, c.Layout.StatusContainer(), storage.StatusBlob("sealed"), 0)
		if err != nil || !seal.IsSealed(raw) || bytes.Contains(raw, []byte("queued")) {
			t.Fatalf("stored status is not sealed: %q, %v", raw, err)
		}
		if st, _, err := c.GetStatus(ctx, "sealed"); err != nil || st.State != record.StateQueued {
			t.Fatalf("read back: %+v, %v", st, err)
		}
		if err := c.PutPayload(ctx, "p/args.json", "application/json", []byte(`{"x":1}`)); err != nil {
			t.Fatal(err)
		}
		if got, err := c.GetPayload(ctx, "p/args.json", 7); err != nil || string(got) != `{"x":1}` {
			t.Fatalf("sealed payload within its limit: %q, %v", got, err)
		}
		if _, err := c.GetPayload(ctx, "p/args.json", 6); !errors.Is(err, storage.ErrTooLarge) {
			t.Fatalf("sealed payload over its limit: %v", err)
		}
		c.Sealer = nil
		if _, _, err := c.GetStatus(ctx, "sealed"); err == nil || !bytes.Contains([]byte(err.Error()), []byte(seal.SettingLocalKeys)) {
			t.Fatalf("sealed record without a key: %v", err)
		}
	})
}

// A layout container or queue that went missing is made again by the first write or
// enqueue; any other container or queue is never created.
func TestMissingLayoutMadeOnFirstUse(t *testing.T) {
	t.Parallel()
	forBackends(t, func(t *testing.T, c *storage.Clients) {
		ctx := context.Background()
		s := c.Store()
		if err := s.DeleteContainer(ctx, c.Layout.StatusContainer()); err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteQueue(ctx, c.Layout.JobsQueue()); err != nil {
			t.Fatal(err)
		}
		if _, err := c.PutStatus(ctx, &record.Status{JobID: "m1", State: record.StateQueued}, ""); err != nil {
			t.Fatalf("write to a missing status container: %v", err)
		}
		if st, _, err := c.GetStatus(ctx, "m1"); err != nil || st.State != record.StateQueued {
			t.Fatalf("status %+v, %v", st, err)
		}
		if _, err := c.Enqueue(ctx, c.Layout.JobsQueue(), []byte("hello"), 0, 0); err != nil {
			t.Fatalf("enqueue on a missing jobs queue: %v", err)
		}
		if n, err := s.Count(ctx, c.Layout.JobsQueue()); err != nil || n != 1 {
			t.Fatalf("jobs queue holds %d, %v", n, err)
		}
		foreign := c.Layout.JobsQueue() + "-other"
		if _, err := c.Enqueue(ctx, foreign, []byte("hello"), 0, 0); !storage.IsNotFound(err) {
			t.Fatalf("enqueue on a foreign missing queue: %v", err)
		}
		if _, err := c.PutJSON(ctx, c.Layout.StatusContainer()+"-other", "x.json", 1, ""); !storage.IsNotFound(err) {
			t.Fatalf("write to a foreign missing container: %v", err)
		}
	})
}

// Listing returns the record names in name order; Ensure is idempotent.
func TestListAndEnsure(t *testing.T) {
	t.Parallel()
	forBackends(t, func(t *testing.T, c *storage.Clients) {
		ctx := context.Background()
		if err := c.Ensure(ctx); err != nil {
			t.Fatalf("second Ensure: %v", err)
		}
		for _, id := range []string{"b", "a", "c"} {
			if _, err := c.PutStatus(ctx, &record.Status{JobID: id, State: record.StateQueued}, ""); err != nil {
				t.Fatal(err)
			}
		}
		ids, err := c.ListStatuses(ctx)
		if err != nil || !slices.Equal(ids, []string{"a", "b", "c"}) {
			t.Fatalf("ListStatuses: %v, %v", ids, err)
		}
		if ids, err := c.ListDeadLetters(ctx); err != nil || len(ids) != 0 {
			t.Fatalf("ListDeadLetters: %v, %v", ids, err)
		}
	})
}
