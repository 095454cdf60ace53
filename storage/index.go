package storage

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nightshift-jobs/nightshift/internal/store"
	"github.com/nightshift-jobs/nightshift/record"
)

// Index tags of a status record (docs/storage-layout.md). PutStatus writes them in the
// same conditional Put as the record, so they always describe the version that won.
const (
	// TagState is the job's state.
	TagState = "state"
	// TagKind is the job's kind (TagValue-encoded).
	TagKind = "kind"
	// TagQueue is the queue the job was enqueued on.
	TagQueue = "queue"
	// TagBatch is the batch the job is a child or the finalizer of.
	TagBatch = "batch"
	// TagUpdated is when the status was written (TagTime), the key of time ranges.
	TagUpdated = "updated"
	// TagEnqueued is when the job was enqueued (TagTime).
	TagEnqueued = "enqueued"
	// TagIndex is the version of this tag scheme (IndexVersion).
	TagIndex = "ix"
	// IndexVersion is the tag scheme PutStatus writes.
	IndexVersion = "1"
)

// TagTimeLayout is the layout of time tags: UTC, whole seconds, fixed width, so that the
// service's string comparison orders them in time.
const TagTimeLayout = "2006-01-02T15:04:05Z"

// TagTime formats t for a time tag (the zero time gives "").
func TagTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(TagTimeLayout)
}

// TagValue encodes s into the tag alphabet (letters, digits, space, + - . / : _ and =):
// kept as it is when it uses only those characters other than '=', else each other byte
// as =XX (hex); an encoding longer than store.MaxTagValue becomes "=h" and the SHA-256 of
// s in hex. Equal strings give equal tags, so equality queries encode their value alike.
func TagValue(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if store.TagChar(c) && c != '=' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "=%02X", c)
		}
	}
	if b.Len() > store.MaxTagValue {
		sum := sha256.Sum256([]byte(s))
		return "=h" + hex.EncodeToString(sum[:])
	}
	return b.String()
}

// StatusTags returns the index tags of st (fields that are empty give no tag).
func StatusTags(st *record.Status) map[string]string {
	tags := map[string]string{TagIndex: IndexVersion, TagState: TagValue(string(st.State)), TagUpdated: TagTime(st.UpdatedAt)}
	for k, v := range map[string]string{TagKind: st.Kind, TagQueue: st.Queue, TagBatch: st.BatchID} {
		if v != "" {
			tags[k] = TagValue(v)
		}
	}
	if !st.EnqueuedAt.IsZero() {
		tags[TagEnqueued] = TagTime(st.EnqueuedAt)
	}
	return tags
}

// StatusQuery selects status records by their index tags. Zero fields match everything.
type StatusQuery struct {
	State record.State
	Kind  string
	Queue string
	Batch string
	// Since and Until bound the time the status was written: Since inclusive, Until
	// exclusive. The tags have whole seconds, so the index finds a superset at the
	// edges; check the records read.
	Since, Until time.Time
}

// Where returns the Find Blobs by Tags expression of q: its equalities and a range on
// TagUpdated, which is always there (from the empty string when Since is zero) so that every result
// carries its time.
func (q StatusQuery) Where() string {
	var conds []string
	for _, kv := range [][2]string{{TagState, string(q.State)}, {TagKind, q.Kind}, {TagQueue, q.Queue}, {TagBatch, q.Batch}} {
		if kv[1] != "" {
			conds = append(conds, fmt.Sprintf(`"%s"='%s'`, kv[0], TagValue(kv[1])))
		}
	}
	conds = append(conds, fmt.Sprintf(`"%s">='%s'`, TagUpdated, TagTime(q.Since)))
	if !q.Until.IsZero() {
		conds = append(conds, fmt.Sprintf(`"%s"<='%s'`, TagUpdated, TagTime(q.Until)))
	}
	return strings.Join(conds, " AND ")
}

// Indexed is one status record found through the index.
type Indexed struct {
	JobID string
	// Updated is the record's TagUpdated (whole seconds; zero when unreadable).
	Updated time.Time
}

// ErrNoIndex is returned by FindStatuses when the store cannot search by tags (a
// wrapper that hides the driver's store.Indexer).
var ErrNoIndex = errors.New("the store has no tag index")

// FindStatuses yields the status records whose tags match q, in job-id order, through
// the store's index: one storage call per page of up to 5,000 matches, whatever the
// number of records. Records written before the index (no tags) are not found; see
// ReindexStatus.
func (c *Clients) FindStatuses(ctx context.Context, q StatusQuery) iter.Seq2[Indexed, error] {
	return func(yield func(Indexed, error) bool) {
		ix, ok := c.Store().(store.Indexer)
		if !ok {
			yield(Indexed{}, ErrNoIndex)
			return
		}
		for it, err := range store.FindAll(ctx, ix, c.Layout.StatusContainer(), q.Where()) {
			if err != nil {
				yield(Indexed{}, fmt.Errorf("find statuses: %w", err))
				return
			}
			name, ok := strings.CutSuffix(it.Name, ".json")
			if !ok {
				continue
			}
			at, _ := time.Parse(TagTimeLayout, it.Tags[TagUpdated])
			if !yield(Indexed{JobID: name, Updated: at}, nil) {
				return
			}
		}
	}
}

// ReindexStatus gives a status record written without index tags (before the index
// existed) its tags, by writing the same bytes again with them, conditionally on the
// version read. It reports whether it wrote; a tagged record, or one written meanwhile
// (which carries its own tags), is left as it is.
func (c *Clients) ReindexStatus(ctx context.Context, jobID string) (bool, error) {
	return c.reindex(ctx, c.Layout.StatusContainer(), StatusBlob(jobID), func(data []byte) (map[string]string, error) {
		var st record.Status
		if err := json.Unmarshal(data, &st); err != nil {
			return nil, fmt.Errorf("not a status record: %w", err)
		}
		return StatusTags(&st), nil
	})
}

// reindex rewrites an untagged record with its own bytes and the tags tagsOf gives for
// its (opened) content, If-Match the version read; a tagged record, a missing one and one
// written meanwhile are left alone.
func (c *Clients) reindex(ctx context.Context, cont, name string, tagsOf func(data []byte) (map[string]string, error)) (bool, error) {
	raw, props, err := c.Store().Get(ctx, cont, name, 0)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return false, nil
		}
		return false, fmt.Errorf("reindex %s/%s: %w", cont, name, err)
	}
	if props.TagCount > 0 {
		return false, nil
	}
	data, err := c.openBlob(ctx, cont, name, raw)
	if err != nil {
		return false, fmt.Errorf("reindex %s/%s: %w", cont, name, err)
	}
	tags, err := tagsOf(data)
	if err != nil {
		return false, fmt.Errorf("reindex %s/%s: %w", cont, name, err)
	}
	_, err = c.Store().Put(ctx, cont, name, raw, store.PutOptions{
		ContentType: props.ContentType, Metadata: props.Metadata, IfMatch: props.ETag, Tags: tags,
	})
	if err != nil {
		if IsConflict(err) {
			return false, nil
		}
		return false, fmt.Errorf("reindex %s/%s: %w", cont, name, err)
	}
	return true, nil
}

// tagless holds the drivers (store.Store values) that refused index tags with
// store.ErrForbidden: their status writes go on without tags.
var tagless sync.Map

// uploadTagged is upload with index tags. When the credential may not set tags (a
// connection without the index-tag role or SAS permission `t`) but may write, the record
// is written without them, a warning is logged once, and later writes through the same
// driver skip the tags: jobs keep running, and listings by state, kind, queue, batch or
// time miss those records until the permission is granted (and the process restarted)
// and `nightshift jobs reindex` has run.
func (c *Clients) uploadTagged(ctx context.Context, container, name string, data []byte, opts store.PutOptions, tags map[string]string) (store.ETag, error) {
	if _, off := tagless.Load(c.store); tags == nil || off {
		return c.upload(ctx, container, name, data, opts)
	}
	tagged := opts
	tagged.Tags = tags
	etag, err := c.upload(ctx, container, name, data, tagged)
	if !errors.Is(err, store.ErrForbidden) {
		return etag, err
	}
	etag, plainErr := c.upload(ctx, container, name, data, opts)
	if plainErr != nil {
		return "", err // not a tag problem only: report the first failure
	}
	if _, seen := tagless.LoadOrStore(c.store, true); !seen {
		slog.Warn("nightshift: records are written without index tags: the storage credential may not set them",
			"container", container, "needs", "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/tags/write (or SAS permission t)", "error", err.Error())
	}
	return etag, nil
}

// WithStore returns a copy of c that reaches storage through s (a wrapper of c.Store():
// counting, fault injection). Wrappers that should keep the index pass on
// store.Indexer.
func (c *Clients) WithStore(s store.Store) *Clients {
	cp := *c
	cp.store = s
	return &cp
}
