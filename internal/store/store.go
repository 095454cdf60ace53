package store

import (
	"context"
	"errors"
	"io"
	"iter"
	"time"
)

// Errors every driver maps its failures onto; test them with errors.Is. Drivers wrap them
// together with their own error, so the original stays reachable with errors.As.
var (
	// ErrNotFound: the queue, container, blob or message does not exist, or a pop receipt
	// is no longer the message's current one (it was updated, redelivered or deleted).
	ErrNotFound = errors.New("not found")
	// ErrConflict: a condition did not hold. A create-only write (IfNoneMatchAny) found
	// the blob, an If-Match write or delete found another ETag, or a lease stood in the
	// way (held by someone else, or missing from a write to a leased blob).
	ErrConflict = errors.New("conflict")
	// ErrTooLarge: a blob holds more than the caller allows, or a message is over
	// MaxMessageBytes.
	ErrTooLarge = errors.New("too large")
	// ErrInvalid: a name, duration or count is outside what the service accepts (see
	// ValidQueueName, ValidContainerName and the limits below).
	ErrInvalid = errors.New("invalid argument")
	// ErrForbidden: the credential may not do this (a role or SAS permission is missing,
	// such as the index-tag actions for PutOptions.Tags and Indexer). The memory driver
	// never returns it.
	ErrForbidden = errors.New("forbidden")
)

// Limits of Azure Storage that every driver enforces the same way.
const (
	// MaxMessageBytes is the largest message text, in UTF-8 bytes (64 KiB).
	MaxMessageBytes = 64 * 1024
	// MaxReceive is the most messages one Receive or Peek returns.
	MaxReceive = 32
	// MaxVisibility is the longest enqueue delay and visibility timeout (7 days).
	MaxVisibility = 7 * 24 * time.Hour
	// DefaultTTL is a message's time to live when Enqueue is given none (7 days).
	DefaultTTL = 7 * 24 * time.Hour
	// DefaultVisibility is the visibility timeout of Receive when given none.
	DefaultVisibility = 30 * time.Second
	// MinLease and MaxLease bound a finite lease; a negative duration asks for a lease
	// that never expires.
	MinLease = 15 * time.Second
	MaxLease = 60 * time.Second
)

// Queues is the message-queue concern: Azure Storage queue semantics (at-least-once
// delivery with visibility timeouts, dequeue counts, pop receipts and message time to
// live). Durations are rounded up to whole seconds, as the service keeps them.
type Queues interface {
	// CreateQueue creates a queue; an existing queue is not an error.
	CreateQueue(ctx context.Context, queue string) error
	// DeleteQueue deletes a queue and its messages (ErrNotFound when there is none).
	DeleteQueue(ctx context.Context, queue string) error
	// Enqueue puts text on queue, invisible for delay (0 … MaxVisibility), living for
	// ttl (DefaultTTL when ttl <= 0; it must exceed delay). It returns the message id.
	Enqueue(ctx context.Context, queue, text string, delay, ttl time.Duration) (string, error)
	// Receive takes up to max (1 … MaxReceive) visible messages, hiding each for
	// visibility (DefaultVisibility when <= 0) and counting the delivery in its
	// DequeueCount. Each message carries a fresh pop receipt; none is an empty slice.
	Receive(ctx context.Context, queue string, max int, visibility time.Duration) ([]Message, error)
	// Peek returns up to max (1 … MaxReceive) visible messages without hiding them or
	// counting a delivery; their PopReceipt is empty.
	Peek(ctx context.Context, queue string, max int) ([]Message, error)
	// DeleteMessage deletes a received message. A popReceipt that is not the message's
	// current one, or a message already gone, gives ErrNotFound.
	DeleteMessage(ctx context.Context, queue, id, popReceipt string) error
	// Update replaces a received message's text and hides it for timeout (0 …
	// MaxVisibility) from now; it returns the new pop receipt, and the old one stops
	// working. (The service has no visibility-only update in the SDK; pass the text the
	// message was received with to keep it.)
	Update(ctx context.Context, queue, id, popReceipt, text string, timeout time.Duration) (string, error)
	// Count returns the approximate number of messages on queue, invisible ones
	// included (ErrNotFound when the queue does not exist).
	Count(ctx context.Context, queue string) (int, error)
}

// Message is a queue message as Receive or Peek returns it. Times have the service's
// one-second precision.
type Message struct {
	ID string
	// PopReceipt proves the latest delivery; DeleteMessage and Update need it.
	PopReceipt string
	Text       string
	// DequeueCount counts the deliveries so far, this one included.
	DequeueCount   int64
	InsertionTime  time.Time
	ExpirationTime time.Time
	// NextVisible is when the message becomes visible again (after a Receive) or was
	// visible from (after a Peek).
	NextVisible time.Time
}

// ETag identifies one version of a blob; every write gives a new one.
type ETag string

// Properties describe a blob. Metadata keys are case-insensitive in the service and
// reported lower-cased by every driver.
type Properties struct {
	ETag          ETag
	ContentType   string
	ContentLength int64
	// LastModified has the service's one-second precision.
	LastModified time.Time
	Metadata     map[string]string
	// TagCount is how many index tags the blob carries (see PutOptions.Tags).
	TagCount int
}

// Item is one blob of a listing.
type Item struct {
	Name string
	Properties
}

// PutOptions condition and describe a blob write. The zero value overwrites
// unconditionally with content type application/octet-stream and no metadata.
type PutOptions struct {
	// ContentType is stored with the blob ("application/octet-stream" when empty).
	ContentType string
	// Metadata replaces the blob's metadata; keys are ASCII identifiers.
	Metadata map[string]string
	// IfMatch writes only over this version (ErrConflict otherwise, also when the blob
	// does not exist).
	IfMatch ETag
	// IfNoneMatchAny writes only when the blob does not exist (ErrConflict otherwise).
	IfNoneMatchAny bool
	// LeaseID must name the blob's active lease when it has one. (Azure also refuses a
	// LeaseID on a blob without an active lease; Azurite accepts it, so do not rely on
	// either.)
	LeaseID string
	// Tags replace the blob's index tags (a write without Tags leaves it with none), in
	// the same request as the data, so they follow the write that wins its condition.
	// They must pass ValidTags. Find blobs by them through Indexer.
	Tags map[string]string
}

// DeleteOptions condition a blob delete; the zero value deletes unconditionally.
type DeleteOptions struct {
	// IfMatch deletes only this version (ErrConflict when the blob changed or is gone).
	IfMatch ETag
	// LeaseID must name the blob's active lease when it has one.
	LeaseID string
}

// Blobs is the blob concern: containers of named byte blobs with ETags, conditional
// writes and metadata.
type Blobs interface {
	// CreateContainer creates a container; an existing container is not an error.
	CreateContainer(ctx context.Context, container string) error
	// DeleteContainer deletes a container and its blobs (ErrNotFound when there is none).
	DeleteContainer(ctx context.Context, container string) error
	// Get reads a blob and its properties. With maxBytes > 0, a blob holding more gives
	// ErrTooLarge without reading it all.
	Get(ctx context.Context, container, name string, maxBytes int64) ([]byte, Properties, error)
	// Open starts reading a blob and returns its properties; the caller reads and closes
	// the body. With maxBytes > 0, a blob holding more gives ErrTooLarge before any read
	// (the body is not capped: a blob that grows meanwhile is read as it is served).
	Open(ctx context.Context, container, name string, maxBytes int64) (io.ReadCloser, Properties, error)
	// Properties reads a blob's properties without its data.
	Properties(ctx context.Context, container, name string) (Properties, error)
	// Put writes a blob under opts and returns its new ETag.
	Put(ctx context.Context, container, name string, data []byte, opts PutOptions) (ETag, error)
	// Delete deletes a blob under opts (ErrNotFound when it does not exist).
	Delete(ctx context.Context, container, name string, opts DeleteOptions) error
	// List yields the blobs of container whose names start with prefix, in name order
	// (byte-wise). A missing container yields ErrNotFound once.
	List(ctx context.Context, container, prefix string) iter.Seq2[Item, error]
}

// Leases is the blob-lease concern: a lease makes one holder the only writer and
// deleter of a blob until it is released or expires (singleton locks, moving a
// scheduled entry exactly once).
type Leases interface {
	// AcquireLease takes a lease on an existing blob for d (MinLease … MaxLease, or
	// negative for one that never expires) and returns its id. A lease held by someone
	// else gives ErrConflict; a missing blob ErrNotFound.
	AcquireLease(ctx context.Context, container, name string, d time.Duration) (string, error)
	// RenewLease restarts the lease's duration; it works after expiry as long as no one
	// else took the blob's lease meanwhile (ErrConflict then).
	RenewLease(ctx context.Context, container, name, leaseID string) error
	// ReleaseLease ends the lease at once (ErrConflict when leaseID is not the blob's).
	ReleaseLease(ctx context.Context, container, name, leaseID string) error
}

// Linker is implemented by drivers that can hand out read-only URLs of a blob, valid
// from start until expiry (result links of the HTTP API). The memory driver has no URLs
// and does not implement it.
type Linker interface {
	ReadURL(ctx context.Context, container, name string, start, expiry time.Time) (string, error)
}

// Index-tag limits of Azure Storage that every driver enforces the same way.
const (
	// MaxTags is the most index tags one blob carries.
	MaxTags = 10
	// MaxTagKey and MaxTagValue bound a tag's key (1 … MaxTagKey characters) and value
	// (0 … MaxTagValue characters).
	MaxTagKey   = 128
	MaxTagValue = 256
	// MaxFindResults is the most blobs one FindByTags page holds.
	MaxFindResults = 5000
)

// Tagged is one blob found by its index tags.
type Tagged struct {
	Name string
	// Tags holds the blob's tags that the expression names (as the service returns them).
	Tags map[string]string
}

// TagPage is one page of FindByTags.
type TagPage struct {
	Items []Tagged
	// Next continues the search (pass it as marker); "" on the last page.
	Next string
}

// Indexer finds blobs by their index tags (Azure's Find Blobs by Tags in Container).
// Both drivers implement it; a Store wrapper that does not pass it on makes callers fall
// back to listing.
//
// The expression is the service's: conditions `"key" op 'value'` joined by AND, op one
// of = > >= < <= (values compare as strings, byte-wise), plus an optional
// `@container = 'name'` naming the container searched. A blob matches when it has every
// named tag and each condition holds. There is no OR, NOT or <>, and two conditions on
// the same side of one key (`"t" > 'a' AND "t" >= 'b'`) are invalid. Azure optimises an
// equality on one tag and a range on one tag; more conditions still work. Keys and
// values use the tag alphabet (ValidTags), so a value never holds a quote.
//
// Azure updates the index asynchronously: a write shows in FindByTags after a delay
// (usually under a second, documented as eventually consistent); Azurite and the memory
// driver index at once. Callers re-check what they read.
type Indexer interface {
	// FindByTags returns one page of the blobs of container whose tags satisfy where, in
	// name order, at most max (MaxFindResults when max is <= 0 or larger), starting at
	// marker ("" for the first page; else a TagPage.Next). A malformed expression gives
	// ErrInvalid, a missing container ErrNotFound.
	FindByTags(ctx context.Context, container, where, marker string, max int) (TagPage, error)
}

// FindAll yields every blob FindByTags finds, page by page.
func FindAll(ctx context.Context, ix Indexer, container, where string) iter.Seq2[Tagged, error] {
	return func(yield func(Tagged, error) bool) {
		marker := ""
		for {
			page, err := ix.FindByTags(ctx, container, where, marker, 0)
			if err != nil {
				yield(Tagged{}, err)
				return
			}
			for _, it := range page.Items {
				if !yield(it, nil) {
					return
				}
			}
			if page.Next == "" {
				return
			}
			marker = page.Next
		}
	}
}

// Store is everything a driver provides.
type Store interface {
	Queues
	Blobs
	Leases
}
