package storage

import (
	"context"
	"fmt"

	"github.com/nightshift-jobs/nightshift/record"
)

// GetWorkflow reads a workflow record and its ETag (ErrNotFound wrapped when there is
// none).
func (c *Clients) GetWorkflow(ctx context.Context, workflowID string) (*record.Workflow, ETag, error) {
	var w record.Workflow
	etag, err := c.GetJSON(ctx, c.Layout.BatchesContainer(), WorkflowBlob(workflowID), &w)
	if err != nil {
		return nil, "", fmt.Errorf("workflow %s: %w", workflowID, err)
	}
	return &w, etag, nil
}

// PutWorkflow writes a workflow record conditionally (etag "" = only if none exists).
func (c *Clients) PutWorkflow(ctx context.Context, w *record.Workflow, etag ETag) (ETag, error) {
	return c.PutJSON(ctx, c.Layout.BatchesContainer(), WorkflowBlob(w.WorkflowID), w, etag)
}

// UpdateWorkflow applies change to the workflow record and writes it with If-Match,
// re-reading and retrying when another writer got there first. change returns nil to
// write nothing. It returns the record as stored afterwards and whether this call wrote
// it.
func (c *Clients) UpdateWorkflow(ctx context.Context, workflowID string, change func(cur *record.Workflow) *record.Workflow) (*record.Workflow, bool, error) {
	for try := 0; ; try++ {
		cur, etag, err := c.GetWorkflow(ctx, workflowID)
		if err != nil {
			return nil, false, err
		}
		next := change(cur)
		if next == nil {
			return cur, false, nil
		}
		if _, err := c.PutWorkflow(ctx, next, etag); err != nil {
			if IsConflict(err) && try < 100 {
				backoff(ctx, try)
				continue
			}
			return nil, false, fmt.Errorf("update workflow %s: %w", workflowID, err)
		}
		return next, true, nil
	}
}
