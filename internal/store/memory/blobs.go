package memory

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"iter"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/nightshift-jobs/nightshift/internal/store"
)

type container struct {
	blobs map[string]*blob
}

type blob struct {
	data  []byte
	props store.Properties
	tags  map[string]string
	lease *lease
}

type lease struct {
	id       string
	d        time.Duration // negative: never expires
	expires  time.Time
	released bool
}

// active reports whether the lease binds writers at now.
func (l *lease) active(now time.Time) bool {
	return l != nil && !l.released && (l.d < 0 || now.Before(l.expires))
}

func (b *blob) export() store.Properties {
	p := b.props
	p.Metadata = maps.Clone(b.props.Metadata)
	return p
}

// container returns a container; s.mu must be held.
func (s *Store) container(name string) (*container, error) {
	c := s.containers[name]
	if c == nil {
		return nil, notFound("container %s", name)
	}
	return c, nil
}

// blob returns a blob; s.mu must be held.
func (s *Store) blob(cont, name string) (*blob, error) {
	c, err := s.container(cont)
	if err != nil {
		return nil, err
	}
	b := c.blobs[name]
	if b == nil {
		return nil, notFound("blob %s/%s", cont, name)
	}
	return b, nil
}

// CreateContainer creates a container; an existing one is not an error.
func (s *Store) CreateContainer(_ context.Context, name string) error {
	if err := store.ValidContainerName(name); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.containers[name] == nil {
		s.containers[name] = &container{blobs: map[string]*blob{}}
	}
	return nil
}

// DeleteContainer deletes a container and its blobs.
func (s *Store) DeleteContainer(_ context.Context, name string) error {
	if err := store.ValidContainerName(name); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.containers[name] == nil {
		return notFound("container %s", name)
	}
	delete(s.containers, name)
	return nil
}

// Get reads a blob and its properties.
func (s *Store) Get(_ context.Context, cont, name string, maxBytes int64) ([]byte, store.Properties, error) {
	if err := store.CheckBlob(cont, name); err != nil {
		return nil, store.Properties{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	b, err := s.blob(cont, name)
	if err != nil {
		return nil, store.Properties{}, err
	}
	if maxBytes > 0 && int64(len(b.data)) > maxBytes {
		return nil, store.Properties{}, fmt.Errorf("blob %s/%s holds %d bytes, over %d: %w", cont, name, len(b.data), maxBytes, store.ErrTooLarge)
	}
	return slices.Clone(b.data), b.export(), nil
}

// Open reads a blob (under the lock, as Get) and serves it from memory.
func (s *Store) Open(ctx context.Context, cont, name string, maxBytes int64) (io.ReadCloser, store.Properties, error) {
	data, p, err := s.Get(ctx, cont, name, maxBytes)
	if err != nil {
		return nil, store.Properties{}, err
	}
	return io.NopCloser(bytes.NewReader(data)), p, nil
}

// Properties reads a blob's properties.
func (s *Store) Properties(_ context.Context, cont, name string) (store.Properties, error) {
	if err := store.CheckBlob(cont, name); err != nil {
		return store.Properties{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	b, err := s.blob(cont, name)
	if err != nil {
		return store.Properties{}, err
	}
	return b.export(), nil
}

// writable checks a write or delete of b (nil when missing) against its conditions and
// lease; s.mu must be held.
func (s *Store) writable(where string, b *blob, ifMatch store.ETag, ifNoneMatchAny bool, leaseID string) error {
	switch {
	case ifNoneMatchAny && b != nil:
		return conflict("%s exists", where)
	case ifMatch != "" && (b == nil || b.props.ETag != ifMatch):
		return conflict("%s is not at ETag %s", where, ifMatch)
	}
	now := s.now()
	switch {
	case b != nil && b.lease.active(now) && b.lease.id != leaseID:
		return conflict("%s is leased and the request does not name its lease", where)
	case leaseID != "" && (b == nil || !b.lease.active(now)):
		return conflict("%s has no active lease %s", where, leaseID)
	}
	return nil
}

// Put writes a blob.
func (s *Store) Put(_ context.Context, cont, name string, data []byte, opts store.PutOptions) (store.ETag, error) {
	if err := store.CheckPut(cont, name, opts); err != nil {
		return "", err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.container(cont)
	if err != nil {
		return "", err
	}
	old := c.blobs[name]
	if err := s.writable("blob "+cont+"/"+name, old, opts.IfMatch, opts.IfNoneMatchAny, opts.LeaseID); err != nil {
		return "", err
	}
	ct := opts.ContentType
	if ct == "" {
		ct = "application/octet-stream"
	}
	md := map[string]string{}
	for k, v := range opts.Metadata {
		md[strings.ToLower(k)] = v
	}
	b := &blob{data: slices.Clone(data), tags: maps.Clone(opts.Tags), props: store.Properties{
		ETag: store.ETag(fmt.Sprintf("\"0x%X\"", s.next())), ContentType: ct, ContentLength: int64(len(data)),
		LastModified: s.now().UTC().Truncate(time.Second), Metadata: md, TagCount: len(opts.Tags),
	}}
	if old != nil && old.lease.active(s.now()) {
		b.lease = old.lease // a write under the lease keeps it
	}
	c.blobs[name] = b
	return b.props.ETag, nil
}

// Delete deletes a blob.
func (s *Store) Delete(_ context.Context, cont, name string, opts store.DeleteOptions) error {
	if err := store.CheckBlob(cont, name); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.container(cont)
	if err != nil {
		return err
	}
	b := c.blobs[name]
	if b == nil && opts.IfMatch == "" {
		return notFound("blob %s/%s", cont, name)
	}
	if err := s.writable("blob "+cont+"/"+name, b, opts.IfMatch, false, opts.LeaseID); err != nil {
		return err
	}
	delete(c.blobs, name)
	return nil
}

// List yields the blobs of a container whose names start with prefix, in name order. It
// lists a snapshot taken when iteration starts.
func (s *Store) List(_ context.Context, cont, prefix string) iter.Seq2[store.Item, error] {
	return func(yield func(store.Item, error) bool) {
		if err := store.ValidContainerName(cont); err != nil {
			yield(store.Item{}, err)
			return
		}
		s.mu.Lock()
		c, err := s.container(cont)
		var items []store.Item
		if err == nil {
			for name, b := range c.blobs {
				if strings.HasPrefix(name, prefix) {
					items = append(items, store.Item{Name: name, Properties: b.export()})
				}
			}
		}
		s.mu.Unlock()
		if err != nil {
			yield(store.Item{}, err)
			return
		}
		slices.SortFunc(items, func(a, b store.Item) int { return strings.Compare(a.Name, b.Name) })
		for _, it := range items {
			if !yield(it, nil) {
				return
			}
		}
	}
}

// AcquireLease takes a lease on an existing blob.
func (s *Store) AcquireLease(_ context.Context, cont, name string, d time.Duration) (string, error) {
	if err := store.CheckBlob(cont, name); err != nil {
		return "", err
	}
	if err := store.CheckLease(d); err != nil {
		return "", err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	b, err := s.blob(cont, name)
	if err != nil {
		return "", err
	}
	now := s.now()
	if b.lease.active(now) {
		return "", conflict("blob %s/%s is leased", cont, name)
	}
	b.lease = &lease{id: newID(), d: d, expires: now.Add(d)}
	return b.lease.id, nil
}

// heldLease returns the blob's lease when it is leaseID; s.mu must be held.
func (s *Store) heldLease(cont, name, leaseID string) (*lease, error) {
	if err := store.CheckBlob(cont, name); err != nil {
		return nil, err
	}
	if leaseID == "" {
		return nil, fmt.Errorf("lease id is required: %w", store.ErrInvalid)
	}
	b, err := s.blob(cont, name)
	if err != nil {
		return nil, err
	}
	if b.lease == nil || b.lease.released || b.lease.id != leaseID {
		return nil, conflict("blob %s/%s does not hold lease %s", cont, name, leaseID)
	}
	return b.lease, nil
}

// RenewLease restarts a lease's duration.
func (s *Store) RenewLease(_ context.Context, cont, name, leaseID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	l, err := s.heldLease(cont, name, leaseID)
	if err != nil {
		return err
	}
	l.expires = s.now().Add(l.d)
	return nil
}

// ReleaseLease ends a lease.
func (s *Store) ReleaseLease(_ context.Context, cont, name, leaseID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	l, err := s.heldLease(cont, name, leaseID)
	if err != nil {
		return err
	}
	l.released = true
	return nil
}

// FindByTags returns a page of the blobs of a container whose tags satisfy where, in
// name order; the marker is the name of the first blob of the page.
func (s *Store) FindByTags(_ context.Context, cont, where, marker string, max int) (store.TagPage, error) {
	max, err := store.CheckFind(cont, max)
	if err != nil {
		return store.TagPage{}, err
	}
	w, err := store.ParseWhere(where)
	if err != nil {
		return store.TagPage{}, err
	}
	s.mu.Lock()
	c, err := s.container(cont)
	var found []store.Tagged
	if err == nil {
		for name, b := range c.blobs {
			if name < marker {
				continue
			}
			if named, ok := w.Match(cont, b.tags); ok {
				found = append(found, store.Tagged{Name: name, Tags: named})
			}
		}
	}
	s.mu.Unlock()
	if err != nil {
		return store.TagPage{}, err
	}
	slices.SortFunc(found, func(a, b store.Tagged) int { return strings.Compare(a.Name, b.Name) })
	var page store.TagPage
	if len(found) > max {
		page.Next = found[max].Name
		found = found[:max]
	}
	page.Items = found
	return page, nil
}
