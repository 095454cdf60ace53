package storetest

import (
	"context"
	"io"
	"iter"
	"maps"
	"sync"
	"time"

	"github.com/nightshift-jobs/nightshift/internal/store"
)

// listPage is the number of blobs one List call of the service returns.
const listPage = 5000

// Counting wraps a store and counts its storage calls by method, for tests that bound
// what an operation costs (a count, never a time). A List counts one call per page of
// 5,000 blobs it yields, as the service pages it; a FindByTags counts one per page. It
// passes store.Indexer on when the wrapped store has it. It is safe for concurrent use.
type Counting struct {
	s  store.Store
	mu sync.Mutex
	n  map[string]int
}

// NewCounting returns s wrapped; Calls starts at zero.
func NewCounting(s store.Store) *Counting { return &Counting{s: s, n: map[string]int{}} }

var (
	_ store.Store   = (*Counting)(nil)
	_ store.Indexer = (*Counting)(nil)
)

func (c *Counting) add(method string, n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n[method] += n
}

// Calls returns the calls so far, by method name.
func (c *Counting) Calls() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.n)
}

// Total returns the number of calls so far.
func (c *Counting) Total() int {
	t := 0
	for _, n := range c.Calls() {
		t += n
	}
	return t
}

// Reset sets every count back to zero.
func (c *Counting) Reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n = map[string]int{}
}

// CreateQueue counts and forwards.
func (c *Counting) CreateQueue(ctx context.Context, q string) error {
	c.add("CreateQueue", 1)
	return c.s.CreateQueue(ctx, q)
}

// DeleteQueue counts and forwards.
func (c *Counting) DeleteQueue(ctx context.Context, q string) error {
	c.add("DeleteQueue", 1)
	return c.s.DeleteQueue(ctx, q)
}

// Enqueue counts and forwards.
func (c *Counting) Enqueue(ctx context.Context, q, text string, delay, ttl time.Duration) (string, error) {
	c.add("Enqueue", 1)
	return c.s.Enqueue(ctx, q, text, delay, ttl)
}

// Receive counts and forwards.
func (c *Counting) Receive(ctx context.Context, q string, max int, vis time.Duration) ([]store.Message, error) {
	c.add("Receive", 1)
	return c.s.Receive(ctx, q, max, vis)
}

// Peek counts and forwards.
func (c *Counting) Peek(ctx context.Context, q string, max int) ([]store.Message, error) {
	c.add("Peek", 1)
	return c.s.Peek(ctx, q, max)
}

// DeleteMessage counts and forwards.
func (c *Counting) DeleteMessage(ctx context.Context, q, id, pop string) error {
	c.add("DeleteMessage", 1)
	return c.s.DeleteMessage(ctx, q, id, pop)
}

// Update counts and forwards.
func (c *Counting) Update(ctx context.Context, q, id, pop, text string, timeout time.Duration) (string, error) {
	c.add("Update", 1)
	return c.s.Update(ctx, q, id, pop, text, timeout)
}

// Count counts and forwards.
func (c *Counting) Count(ctx context.Context, q string) (int, error) {
	c.add("Count", 1)
	return c.s.Count(ctx, q)
}

// CreateContainer counts and forwards.
func (c *Counting) CreateContainer(ctx context.Context, cont string) error {
	c.add("CreateContainer", 1)
	return c.s.CreateContainer(ctx, cont)
}

// DeleteContainer counts and forwards.
func (c *Counting) DeleteContainer(ctx context.Context, cont string) error {
	c.add("DeleteContainer", 1)
	return c.s.DeleteContainer(ctx, cont)
}

// Get counts and forwards.
func (c *Counting) Get(ctx context.Context, cont, name string, maxBytes int64) ([]byte, store.Properties, error) {
	c.add("Get", 1)
	return c.s.Get(ctx, cont, name, maxBytes)
}

// Open counts and forwards.
func (c *Counting) Open(ctx context.Context, cont, name string, maxBytes int64) (io.ReadCloser, store.Properties, error) {
	c.add("Open", 1)
	return c.s.Open(ctx, cont, name, maxBytes)
}

// Properties counts and forwards.
func (c *Counting) Properties(ctx context.Context, cont, name string) (store.Properties, error) {
	c.add("Properties", 1)
	return c.s.Properties(ctx, cont, name)
}

// Put counts and forwards.
func (c *Counting) Put(ctx context.Context, cont, name string, data []byte, opts store.PutOptions) (store.ETag, error) {
	c.add("Put", 1)
	return c.s.Put(ctx, cont, name, data, opts)
}

// Delete counts and forwards.
func (c *Counting) Delete(ctx context.Context, cont, name string, opts store.DeleteOptions) error {
	c.add("Delete", 1)
	return c.s.Delete(ctx, cont, name, opts)
}

// List counts one call per page of 5,000 blobs yielded (at least one) and forwards.
func (c *Counting) List(ctx context.Context, cont, prefix string) iter.Seq2[store.Item, error] {
	return func(yield func(store.Item, error) bool) {
		c.add("List", 1)
		n := 0
		for it, err := range c.s.List(ctx, cont, prefix) {
			if n++; n > listPage && n%listPage == 1 {
				c.add("List", 1)
			}
			if !yield(it, err) {
				return
			}
		}
	}
}

// AcquireLease counts and forwards.
func (c *Counting) AcquireLease(ctx context.Context, cont, name string, d time.Duration) (string, error) {
	c.add("AcquireLease", 1)
	return c.s.AcquireLease(ctx, cont, name, d)
}

// RenewLease counts and forwards.
func (c *Counting) RenewLease(ctx context.Context, cont, name, id string) error {
	c.add("RenewLease", 1)
	return c.s.RenewLease(ctx, cont, name, id)
}

// ReleaseLease counts and forwards.
func (c *Counting) ReleaseLease(ctx context.Context, cont, name, id string) error {
	c.add("ReleaseLease", 1)
	return c.s.ReleaseLease(ctx, cont, name, id)
}

// FindByTags counts one call and forwards; without an Indexer underneath it gives
// store.ErrInvalid.
func (c *Counting) FindByTags(ctx context.Context, cont, where, marker string, max int) (store.TagPage, error) {
	c.add("FindByTags", 1)
	ix, ok := c.s.(store.Indexer)
	if !ok {
		return store.TagPage{}, store.ErrInvalid
	}
	return ix.FindByTags(ctx, cont, where, marker, max)
}
