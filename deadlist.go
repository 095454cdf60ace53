package nightshift

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/nightshift-jobs/nightshift/internal/store"
	"github.com/nightshift-jobs/nightshift/record"
	"github.com/nightshift-jobs/nightshift/storage"
)

// FindDeadLetters returns the dead-letter records the filters of sel select (its DeadIDs
// are not consulted), most recent death first.
//
// A filter on kind, reason, cause or time asks the records' index tags (Find Blobs by
// Tags, docs/storage-layout.md#index-tags-on-dead-letter-records): one call per 5,000
// matches, then one read per match, whatever the number of dead letters. Each record
// read is checked against sel again (the index has whole seconds and, in Azure, a short
// lag). Records written before the index have no tags and are found only by sel.Scan, a
// listing of the whole container, or after ReindexDeadLetters. No filter, a store without
// an index and a credential that may not search it list the container too.
func (c *Client) FindDeadLetters(ctx context.Context, sel DeadSelection) ([]*record.DeadLetter, error) {
	if sel.filtered() && !sel.Scan {
		ids, err := c.findDeadIDs(ctx, sel)
		if err == nil {
			list, err := c.readDeadLetters(ctx, ids)
			return matchingDead(list, &sel), err
		}
		if !errors.Is(err, storage.ErrNoIndex) && !errors.Is(err, store.ErrForbidden) {
			return nil, fmt.Errorf("nightshift: %w", err)
		}
	}
	all, err := c.DeadLetters(ctx)
	return matchingDead(all, &sel), err
}

// findDeadIDs asks the index for the records sel's filters select.
func (c *Client) findDeadIDs(ctx context.Context, sel DeadSelection) ([]string, error) {
	var ids []string
	q := storage.DeadQuery{Kind: sel.Kind, Reason: sel.Reason, Cause: sel.Cause, Since: sel.Since}
	for it, err := range c.store.FindDeadLetters(ctx, q) {
		if err != nil {
			return nil, err
		}
		ids = append(ids, it.DeadID)
	}
	return ids, nil
}

func matchingDead(list []*record.DeadLetter, sel *DeadSelection) []*record.DeadLetter {
	out := list[:0]
	for _, d := range list {
		if sel.Matches(d) {
			out = append(out, d)
		}
	}
	return out
}

// ReindexDeadLetters gives every dead-letter record written before the index its tags, so
// that filtered listings find it, like ReindexJobs: one listing of the container, then a
// rewrite of each untagged record with its own bytes and its tags, conditionally on the
// version read. It returns how many records it listed and how many it rewrote.
func (c *Client) ReindexDeadLetters(ctx context.Context) (listed, rewrote int, err error) {
	var ids []string
	for it, err := range c.store.Store().List(ctx, c.store.Layout.DeadLettersContainer(), "") {
		if err != nil {
			return listed, 0, fmt.Errorf("nightshift: reindex dead letters: %w", err)
		}
		id, ok := strings.CutSuffix(it.Name, ".json")
		if !ok {
			continue
		}
		listed++
		if it.TagCount == 0 {
			ids = append(ids, id)
		}
	}
	rewrote, err = c.reindexEach(ctx, ids, c.store.ReindexDeadLetter)
	if err != nil {
		return listed, rewrote, fmt.Errorf("nightshift: reindex dead letters: %w", err)
	}
	return listed, rewrote, nil
}
