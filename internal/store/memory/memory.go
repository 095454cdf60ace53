// Package memory is an in-memory driver of the storage boundary (package store) with the
// semantics of Azure Storage: ETags that change on every write, conditional writes,
// leases, visibility timeouts and delays, dequeue counts, pop receipts and message time
// to live, names and limits validated like the service. Time comes from an injectable
// clock, so tests can let visibility timeouts and leases lapse without waiting.
//
// It is for tests and for running an app without a storage account; nothing is kept
// after the process ends. A Store is safe for concurrent use.
package memory

import (
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/nightshift-jobs/nightshift/internal/store"
)

// Store holds queues and containers in memory. The zero value is not usable; call New.
type Store struct {
	now func() time.Time

	mu         sync.Mutex
	seq        uint64
	queues     map[string]*queue
	containers map[string]*container
}

var (
	_ store.Store   = (*Store)(nil)
	_ store.Indexer = (*Store)(nil)
)

// New returns an empty store that reads the time from now (time.Now when nil).
func New(now func() time.Time) *Store {
	if now == nil {
		now = time.Now
	}
	return &Store{now: now, queues: map[string]*queue{}, containers: map[string]*container{}}
}

// next returns a new sequence number; s.mu must be held.
func (s *Store) next() uint64 {
	s.seq++
	return s.seq
}

func newID() string { return uuid.NewString() }

// notFound builds an error wrapping store.ErrNotFound.
func notFound(format string, args ...any) error {
	return fmt.Errorf(format+": %w", append(args, store.ErrNotFound)...)
}

// conflict builds an error wrapping store.ErrConflict.
func conflict(format string, args ...any) error {
	return fmt.Errorf(format+": %w", append(args, store.ErrConflict)...)
}

// FakeClock is a clock that moves only when told to. It is safe for concurrent use.
type FakeClock struct {
	mu sync.Mutex
	t  time.Time
}

// NewFakeClock returns a clock standing at start.
func NewFakeClock(start time.Time) *FakeClock { return &FakeClock{t: start} }

// Now returns the clock's time; pass the method value to New.
func (c *FakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward by d.
func (c *FakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}
