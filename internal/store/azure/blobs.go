package azure

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/lease"

	"github.com/nightshift-jobs/nightshift/internal/store"
)

// CreateContainer creates a container; an existing one is not an error.
func (s *Store) CreateContainer(ctx context.Context, name string) error {
	ctx = s.op(ctx, "CreateContainer")
	if err := store.ValidContainerName(name); err != nil {
		return err
	}
	_, err := s.b.CreateContainer(ctx, name, nil)
	if err = wrap(err, "create container "+name); errors.Is(err, store.ErrConflict) {
		return nil
	}
	return err
}

// DeleteContainer deletes a container and its blobs.
func (s *Store) DeleteContainer(ctx context.Context, name string) error {
	ctx = s.op(ctx, "DeleteContainer")
	if err := store.ValidContainerName(name); err != nil {
		return err
	}
	_, err := s.b.DeleteContainer(ctx, name, nil)
	return wrap(err, "delete container "+name)
}

// metadata lower-cases keys: the service treats them case-insensitively, and the SDK
// reports them canonicalised from headers but verbatim from listings.
func metadata(m map[string]*string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[strings.ToLower(k)] = deref(v)
	}
	return out
}

// quoted returns an ETag in its quoted form: headers carry it quoted, listings bare.
func quoted(e *azcore.ETag) store.ETag {
	s := string(deref(e))
	if s != "" && !strings.HasPrefix(s, `"`) {
		s = `"` + s + `"`
	}
	return store.ETag(s)
}

func props[N int32 | int64](etag *azcore.ETag, ct *string, n *int64, mod *time.Time, md map[string]*string, tags *N) store.Properties {
	return store.Properties{
		ETag: quoted(etag), ContentType: deref(ct), ContentLength: deref(n),
		LastModified: deref(mod).UTC(), Metadata: metadata(md), TagCount: int(deref(tags)),
	}
}

// Get reads a blob and its properties.
func (s *Store) Get(ctx context.Context, cont, name string, maxBytes int64) ([]byte, store.Properties, error) {
	body, p, err := s.Open(ctx, cont, name, maxBytes)
	if err != nil {
		return nil, store.Properties{}, err
	}
	defer body.Close()
	r := io.Reader(body)
	if maxBytes > 0 {
		r = io.LimitReader(r, maxBytes+1)
	}
	where := cont + "/" + name
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, store.Properties{}, fmt.Errorf("read %s: %w", where, err)
	}
	if maxBytes > 0 && int64(len(data)) > maxBytes {
		return nil, store.Properties{}, fmt.Errorf("%s holds more than %d bytes: %w", where, maxBytes, store.ErrTooLarge)
	}
	return data, p, nil
}

// Open starts a download of a blob.
func (s *Store) Open(ctx context.Context, cont, name string, maxBytes int64) (io.ReadCloser, store.Properties, error) {
	ctx = s.op(ctx, "Download")
	if err := store.CheckBlob(cont, name); err != nil {
		return nil, store.Properties{}, err
	}
	where := cont + "/" + name
	resp, err := s.b.DownloadStream(ctx, cont, name, nil)
	if err != nil {
		return nil, store.Properties{}, wrap(err, "read "+where)
	}
	p := props(resp.ETag, resp.ContentType, resp.ContentLength, resp.LastModified, resp.Metadata, resp.TagCount)
	if maxBytes > 0 && p.ContentLength > maxBytes {
		resp.Body.Close()
		return nil, store.Properties{}, fmt.Errorf("%s holds %d bytes, over %d: %w", where, p.ContentLength, maxBytes, store.ErrTooLarge)
	}
	return resp.Body, p, nil
}

// Properties reads a blob's properties.
func (s *Store) Properties(ctx context.Context, cont, name string) (store.Properties, error) {
	ctx = s.op(ctx, "Properties")
	if err := store.CheckBlob(cont, name); err != nil {
		return store.Properties{}, err
	}
	resp, err := s.b.ServiceClient().NewContainerClient(cont).NewBlobClient(name).GetProperties(ctx, nil)
	if err != nil {
		return store.Properties{}, wrap(err, "properties of "+cont+"/"+name)
	}
	return props(resp.ETag, resp.ContentType, resp.ContentLength, resp.LastModified, resp.Metadata, resp.TagCount), nil
}

func conditions(ifMatch store.ETag, ifNoneMatchAny bool, leaseID string) *blob.AccessConditions {
	ac := &blob.AccessConditions{ModifiedAccessConditions: &blob.ModifiedAccessConditions{}}
	if ifMatch != "" {
		e := azcore.ETag(ifMatch)
		ac.ModifiedAccessConditions.IfMatch = &e
	}
	if ifNoneMatchAny {
		e := azcore.ETagAny
		ac.ModifiedAccessConditions.IfNoneMatch = &e
	}
	if leaseID != "" {
		ac.LeaseAccessConditions = &blob.LeaseAccessConditions{LeaseID: &leaseID}
	}
	return ac
}

// Put writes a blob.
func (s *Store) Put(ctx context.Context, cont, name string, data []byte, opts store.PutOptions) (store.ETag, error) {
	ctx = s.op(ctx, "Put")
	if err := store.CheckPut(cont, name, opts); err != nil {
		return "", err
	}
	ct := opts.ContentType
	if ct == "" {
		ct = "application/octet-stream"
	}
	md := make(map[string]*string, len(opts.Metadata))
	for k, v := range opts.Metadata {
		md[strings.ToLower(k)] = &v
	}
	resp, err := s.b.UploadBuffer(ctx, cont, name, data, &azblob.UploadBufferOptions{
		HTTPHeaders:      &blob.HTTPHeaders{BlobContentType: &ct},
		Metadata:         md,
		Tags:             opts.Tags,
		AccessConditions: conditions(opts.IfMatch, opts.IfNoneMatchAny, opts.LeaseID),
	})
	if err != nil {
		return "", wrap(err, "write "+cont+"/"+name)
	}
	return quoted(resp.ETag), nil
}

// Delete deletes a blob.
func (s *Store) Delete(ctx context.Context, cont, name string, opts store.DeleteOptions) error {
	ctx = s.op(ctx, "Delete")
	if err := store.CheckBlob(cont, name); err != nil {
		return err
	}
	_, err := s.b.DeleteBlob(ctx, cont, name, &blob.DeleteOptions{AccessConditions: conditions(opts.IfMatch, false, opts.LeaseID)})
	return wrap(err, "delete "+cont+"/"+name)
}

// List yields the blobs of a container whose names start with prefix, in name order.
func (s *Store) List(ctx context.Context, cont, prefix string) iter.Seq2[store.Item, error] {
	ctx = s.op(ctx, "List")
	return func(yield func(store.Item, error) bool) {
		if err := store.ValidContainerName(cont); err != nil {
			yield(store.Item{}, err)
			return
		}
		opts := &container.ListBlobsFlatOptions{Include: container.ListBlobsInclude{Metadata: true}}
		if prefix != "" {
			opts.Prefix = &prefix
		}
		pager := s.b.NewListBlobsFlatPager(cont, opts)
		for pager.More() {
			page, err := pager.NextPage(ctx)
			if err != nil {
				yield(store.Item{}, wrap(err, "list "+cont))
				return
			}
			for _, it := range page.Segment.BlobItems {
				if it.Name == nil || it.Properties == nil {
					continue
				}
				p := it.Properties
				item := store.Item{Name: *it.Name, Properties: props(p.ETag, p.ContentType, p.ContentLength, p.LastModified, it.Metadata, p.TagCount)}
				if !yield(item, nil) {
					return
				}
			}
		}
	}
}

// FindByTags returns one page of Find Blobs by Tags in Container.
func (s *Store) FindByTags(ctx context.Context, cont, where, marker string, max int) (store.TagPage, error) {
	ctx = s.op(ctx, "FindByTags")
	max, err := store.CheckFind(cont, max)
	if err != nil {
		return store.TagPage{}, err
	}
	opts := &container.FilterBlobsOptions{MaxResults: to.Ptr(int32(max))}
	if marker != "" {
		opts.Marker = &marker
	}
	cc := s.b.ServiceClient().NewContainerClient(cont)
	resp, err := cc.FilterBlobs(ctx, where, opts)
	if err != nil {
		return store.TagPage{}, wrap(err, "find blobs by tags in "+cont)
	}
	page := store.TagPage{Next: deref(resp.NextMarker)}
	if s.emulator {
		if page.Next, err = s.windowEnd(ctx, cc, marker, max); err != nil {
			return store.TagPage{}, err
		}
	}
	for _, it := range resp.Blobs {
		if it == nil || it.Name == nil {
			continue
		}
		t := store.Tagged{Name: *it.Name, Tags: map[string]string{}}
		if it.Tags != nil {
			for _, tag := range it.Tags.BlobTagSet {
				if tag != nil && tag.Key != nil {
					t.Tags[*tag.Key] = deref(tag.Value)
				}
			}
		}
		page.Items = append(page.Items, t)
	}
	return page, nil
}

// windowEnd works around Azurite's paging of Find Blobs by Tags (3.37): it searches only
// the max blobs after the marker (by name) and drops the continuation when fewer of them
// match. Its markers are blob names, so the continuation is where a listing of the same
// max blobs ends: one List call per page, on the emulator only.
func (s *Store) windowEnd(ctx context.Context, cc *container.Client, marker string, max int) (string, error) {
	opts := &container.ListBlobsFlatOptions{MaxResults: to.Ptr(int32(max))}
	if marker != "" {
		opts.Marker = &marker
	}
	page, err := cc.NewListBlobsFlatPager(opts).NextPage(ctx)
	if err != nil {
		return "", wrap(err, "list "+cc.URL())
	}
	return deref(page.NextMarker), nil
}

func (s *Store) leaseClient(cont, name, leaseID string) (*lease.BlobClient, error) {
	if err := store.CheckBlob(cont, name); err != nil {
		return nil, err
	}
	var o *lease.BlobClientOptions
	if leaseID != "" {
		o = &lease.BlobClientOptions{LeaseID: &leaseID}
	}
	return lease.NewBlobClient(s.b.ServiceClient().NewContainerClient(cont).NewBlobClient(name), o)
}

// AcquireLease takes a lease on an existing blob.
func (s *Store) AcquireLease(ctx context.Context, cont, name string, d time.Duration) (string, error) {
	ctx = s.op(ctx, "AcquireLease")
	if err := store.CheckLease(d); err != nil {
		return "", err
	}
	lc, err := s.leaseClient(cont, name, "")
	if err != nil {
		return "", err
	}
	n := int32(-1)
	if d >= 0 {
		n = int32(store.Seconds(d))
	}
	resp, err := lc.AcquireLease(ctx, n, nil)
	if err != nil {
		return "", wrap(err, "lease "+cont+"/"+name)
	}
	return deref(resp.LeaseID), nil
}

// RenewLease restarts a lease's duration.
func (s *Store) RenewLease(ctx context.Context, cont, name, leaseID string) error {
	ctx = s.op(ctx, "RenewLease")
	if leaseID == "" {
		return fmt.Errorf("lease id is required: %w", store.ErrInvalid)
	}
	lc, err := s.leaseClient(cont, name, leaseID)
	if err != nil {
		return err
	}
	_, err = lc.RenewLease(ctx, nil)
	return wrap(err, "renew lease on "+cont+"/"+name)
}

// ReleaseLease ends a lease.
func (s *Store) ReleaseLease(ctx context.Context, cont, name, leaseID string) error {
	ctx = s.op(ctx, "ReleaseLease")
	if leaseID == "" {
		return fmt.Errorf("lease id is required: %w", store.ErrInvalid)
	}
	lc, err := s.leaseClient(cont, name, leaseID)
	if err != nil {
		return err
	}
	_, err = lc.ReleaseLease(ctx, nil)
	return wrap(err, "release lease on "+cont+"/"+name)
}
