package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/nightshift-jobs/nightshift/callback"
	"github.com/nightshift-jobs/nightshift/httpapi"
	"github.com/nightshift-jobs/nightshift/internal/store"
)

// TestWorkflowCallbackOverHTTP: POST /api/workflows takes a "callback" checked like a
// job's (an unlisted queue or an empty callback is a 400 naming the field); a listed
// queue gets one workflow.succeeded message when the workflow ends.
func TestWorkflowCallbackOverHTTP(t *testing.T) {
	e, _ := newCallbackEnv(t, map[string]string{callback.SettingCallbackQueues: "wf-events-listed"})
	ctx := context.Background()
	if err := e.store.Store().CreateQueue(ctx, "wf-events-listed"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.store.Store().DeleteQueue(context.Background(), "wf-events-listed") })
	steps := `"steps":[{"name":"a","kind":"test.echo","args":{"text":"a"}},{"name":"b","kind":"test.echo","args":{"text":"b"},"depends_on":["a"]}]`
	for _, bad := range []struct{ callback, field string }{
		{`{"queue":"some-other-queue"}`, "callback.queue"},
		{`{}`, "callback"},
		{`{"url":"https://x.example/h","extra":1}`, "callback.extra"},
	} {
		r := e.call(httpapi.FunctionWorkflowStart, "POST", workflowsBase, `{"callback":`+bad.callback+`,`+steps+`}`, nil, nil)
		if r.status != http.StatusBadRequest || !strings.Contains(string(r.body), `"`+bad.field+`"`) {
			t.Errorf("callback %s: %d %s; want 400 on %s", bad.callback, r.status, r.body, bad.field)
		}
	}
	body := fmt.Sprintf(`{"workflow_id":"wf-http-cb","callback":{"queue":"wf-events-listed"},%s}`, steps)
	if r := e.call(httpapi.FunctionWorkflowStart, "POST", workflowsBase, body, nil, nil); r.status != http.StatusAccepted {
		t.Fatalf("POST = %d %s", r.status, r.body)
	}
	e.runJobs()
	e.runJobs()
	msgs, err := e.store.Store().Receive(ctx, "wf-events-listed", store.MaxReceive, 0)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("callback queue: %d messages, %v; want 1", len(msgs), err)
	}
	var p callback.Payload
	if err := json.Unmarshal([]byte(msgs[0].Text), &p); err != nil || p.Event != callback.EventWorkflowSucceeded || p.WorkflowID != "wf-http-cb" || p.Workflow == nil {
		t.Fatalf("callback message %s (%v)", msgs[0].Text, err)
	}
}
