package httpapi_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/nightshift-jobs/nightshift/httpapi"
	"github.com/nightshift-jobs/nightshift/record"
)

const workflowsBase = "https://app.example.test/api/workflows"

// A workflow started over HTTP runs its steps in dependency order; its status shows every
// step; a second one is cancelled before it runs; bad bodies get problem details.
func TestWorkflowStartStatusCancel(t *testing.T) {
	e := newEnv(t)
	body := `{"workflow_id":"wf-http","steps":[{"name":"a","kind":"test.echo","args":{"text":"a"}},
		{"name":"b","kind":"test.echo","args":{"text":"b"},"depends_on":["a"],"on_failure":"continue"}]}`
	r := e.call(httpapi.FunctionWorkflowStart, "POST", workflowsBase, body, nil, nil)
	if r.status != http.StatusAccepted || r.headers["Location"] != workflowsBase+"/wf-http" {
		t.Fatalf("POST /api/workflows = %d %v %s", r.status, r.headers, r.body)
	}
	e.runJobs()
	e.runJobs()
	s := e.call(httpapi.FunctionWorkflowStatus, "GET", workflowsBase+"/wf-http", "", map[string]string{"id": "wf-http"}, nil)
	m := s.json(t)
	steps, _ := m["steps"].([]any)
	if s.status != http.StatusOK || m["state"] != string(record.WorkflowSucceeded) || len(steps) != 2 || m["status_url"] != workflowsBase+"/wf-http" {
		t.Fatalf("GET workflow = %d %s", s.status, s.body)
	}
	if r := e.call(httpapi.FunctionWorkflowStart, "POST", workflowsBase, strings.Replace(body, "wf-http", "wf-http-2", 1), nil, nil); r.status != http.StatusAccepted {
		t.Fatalf("POST 2 = %d %s", r.status, r.body)
	}
	c := e.call(httpapi.FunctionWorkflowCancel, "POST", workflowsBase+"/wf-http-2/cancel", "", map[string]string{"id": "wf-http-2"}, nil)
	if c.status != http.StatusOK || c.json(t)["state"] != string(record.WorkflowCancelled) {
		t.Fatalf("cancel = %d %s", c.status, c.body)
	}
	for _, bad := range []struct{ body, field string }{
		{`{"steps":[{"name":"a","kind":"test.nope"}]}`, "steps[0].kind"},
		{`{"steps":[{"name":"a","kind":"test.echo","on_failure":"explode"}]}`, "steps[0].on_failure"},
		{`{"steps":[{"name":"a","kind":"test.echo","depends_on":["zz"]}]}`, ""},
		{`{"steps":[],"x":1}`, "x"},
	} {
		r := e.call(httpapi.FunctionWorkflowStart, "POST", workflowsBase, bad.body, nil, nil)
		if r.status != http.StatusBadRequest || r.headers["Content-Type"] != "application/problem+json" || !strings.Contains(string(r.body), bad.field) {
			t.Errorf("%s: %d %v %s", bad.body, r.status, r.headers, r.body)
		}
	}
	if r := e.call(httpapi.FunctionWorkflowStatus, "GET", workflowsBase+"/none", "", map[string]string{"id": "none"}, nil); r.status != http.StatusNotFound {
		t.Errorf("missing workflow: %d %s", r.status, r.body)
	}
}
