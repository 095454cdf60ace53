package nightshifttest

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/nightshift-jobs/nightshift/internal/testenv"
)

// DeliverOne delivers at most one visible message of queue (a job queue of the app) to
// the handler, as one poll of the host's queue trigger with batch size 1, and returns
// how many it delivered (0 or 1). Tests use it to stop a workflow (or any chain of jobs)
// between two steps: App.Client.StartWorkflow, DeliverOne, then CancelWorkflow.
func (a *App) DeliverOne(ctx context.Context, queue string) (int, error) {
	function := ""
	for _, q := range a.queueFunctions() {
		if q[0] == queue {
			function = q[1]
		}
	}
	if function == "" {
		return 0, fmt.Errorf("nightshifttest: %s is not a job queue of the app", queue)
	}
	q := a.store.Store()
	msgs, err := q.Receive(ctx, queue, 1, time.Minute)
	if err != nil || len(msgs) == 0 {
		return 0, err
	}
	m := msgs[0]
	a.remember(m.Text)
	req := httptest.NewRequestWithContext(ctx, http.MethodPost, "/"+function, bytes.NewReader(testenv.QueueInvocation(function, m)))
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	rec := httptest.NewRecorder()
	a.h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		return 0, fmt.Errorf("nightshifttest: %s failed: %d %s", function, rec.Code, rec.Body.String())
	}
	return 1, q.DeleteMessage(ctx, queue, m.ID, m.PopReceipt)
}
