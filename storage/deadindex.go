package storage

import (
	"context"
	"encoding/json"
	"fmt"
	"iter"
	"strings"
	"time"

	"github.com/nightshift-jobs/nightshift/internal/store"
	"github.com/nightshift-jobs/nightshift/record"
)

// Index tags of a dead-letter record (docs/storage-layout.md), next to TagKind, TagQueue
// and TagIndex. PutDeadLetter writes them in the same conditional Put as the record.
const (
	// TagReason is why the job died (record.DeadReason).
	TagReason = "reason"
	// TagCause is record.CauseCrash or record.CauseJob, when the record has one.
	TagCause = "cause"
	// TagDied is when the job died (TagTime), the key of time ranges.
	TagDied = "died"
)

// DeadTags returns the index tags of d (fields that are empty give no tag).
func DeadTags(d *record.DeadLetter) map[string]string {
	tags := map[string]string{TagIndex: IndexVersion, TagReason: TagValue(string(d.Reason)), TagDied: TagTime(d.DiedAt)}
	for k, v := range map[string]string{TagKind: d.Kind, TagCause: string(d.Cause), TagQueue: d.Queue} {
		if v != "" {
			tags[k] = TagValue(v)
		}
	}
	return tags
}

// DeadQuery selects dead-letter records by their index tags. Zero fields match
// everything.
type DeadQuery struct {
	Kind   string
	Reason record.DeadReason
	Cause  record.DeadCause
	Queue  string
	// Since and Until bound the time of death (whole seconds in the index, so a superset
	// at the edges: check the records read).
	Since, Until time.Time
}

// Where returns the Find Blobs by Tags expression of q: its equalities and a range on
// TagDied, always there (from the empty string when Since is zero) so that every result
// carries its time of death.
func (q DeadQuery) Where() string {
	var conds []string
	for _, kv := range [][2]string{{TagReason, string(q.Reason)}, {TagKind, q.Kind}, {TagCause, string(q.Cause)}, {TagQueue, q.Queue}} {
		if kv[1] != "" {
			conds = append(conds, fmt.Sprintf(`"%s"='%s'`, kv[0], TagValue(kv[1])))
		}
	}
	conds = append(conds, fmt.Sprintf(`"%s">='%s'`, TagDied, TagTime(q.Since)))
	if !q.Until.IsZero() {
		conds = append(conds, fmt.Sprintf(`"%s"<='%s'`, TagDied, TagTime(q.Until)))
	}
	return strings.Join(conds, " AND ")
}

// IndexedDead is one dead-letter record found through the index.
type IndexedDead struct {
	DeadID string
	// Died is the record's TagDied (whole seconds; zero when unreadable).
	Died time.Time
}

// FindDeadLetters yields the dead-letter records whose tags match q, in name order,
// through the store's index: one storage call per page of up to 5,000 matches, whatever
// the number of records. Records written before the index are not found; see
// ReindexDeadLetter. A store without an index yields ErrNoIndex.
func (c *Clients) FindDeadLetters(ctx context.Context, q DeadQuery) iter.Seq2[IndexedDead, error] {
	return func(yield func(IndexedDead, error) bool) {
		ix, ok := c.Store().(store.Indexer)
		if !ok {
			yield(IndexedDead{}, ErrNoIndex)
			return
		}
		for it, err := range store.FindAll(ctx, ix, c.Layout.DeadLettersContainer(), q.Where()) {
			if err != nil {
				yield(IndexedDead{}, fmt.Errorf("find dead letters: %w", err))
				return
			}
			name, ok := strings.CutSuffix(it.Name, ".json")
			if !ok {
				continue
			}
			at, _ := time.Parse(TagTimeLayout, it.Tags[TagDied])
			if !yield(IndexedDead{DeadID: name, Died: at}, nil) {
				return
			}
		}
	}
}

// ReindexDeadLetter gives a dead-letter record written without index tags its tags, like
// ReindexStatus: the same bytes again with them, conditionally on the version read. It
// reports whether it wrote.
func (c *Clients) ReindexDeadLetter(ctx context.Context, deadID string) (bool, error) {
	return c.reindex(ctx, c.Layout.DeadLettersContainer(), record.DeadLetterBlob(deadID), func(data []byte) (map[string]string, error) {
		var d record.DeadLetter
		if err := json.Unmarshal(data, &d); err != nil {
			return nil, fmt.Errorf("not a dead-letter record: %w", err)
		}
		return DeadTags(&d), nil
	})
}
