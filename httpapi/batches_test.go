package httpapi_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/nightshift-jobs/nightshift/httpapi"
	"github.com/nightshift-jobs/nightshift/internal/testenv"
	"github.com/nightshift-jobs/nightshift/record"
)

const batchesBase = "https://app.example.test/api/batches"

func (e *env) startBatch(body string) response {
	return e.call(httpapi.FunctionBatchStart, "POST", batchesBase, body, nil, nil)
}

func (e *env) batchStatus(id, query string) response {
	return e.call(httpapi.FunctionBatchStatus, "GET", batchesBase+"/"+id+query, "", map[string]string{"id": id}, nil)
}

// A batch started over HTTP runs its children and then its finalizer; the batch status
// shows live counts and links the jobs, and the jobs link back to the batch.
func TestBatchStartStatusFlow(t *testing.T) {
	e := newEnv(t)
	r := e.startBatch(`{"batch_id":"b-flow","children":[{"kind":"test.echo","args":{"text":"a"}},{"kind":"test.echo","args":{"text":"b"},"max_attempts":2},{"kind":"test.echo","args":{"text":"c"}}],
		"finalizer":{"kind":"test.join"},"meta":{"tenant":"t1"}}`)
	if r.status != http.StatusAccepted {
		t.Fatalf("POST /api/batches = %d %s", r.status, r.body)
	}
	body := r.json(t)
	want := batchesBase + "/b-flow"
	if body["batch_id"] != "b-flow" || body["total"] != 3.0 || body["status_url"] != want || r.headers["Location"] != want ||
		body["finalizer_status_url"] != base+"/b-flow-finalizer" || body["state"] != string(record.BatchRunning) {
		t.Fatalf("202 body %s, Location %q", r.body, r.headers["Location"])
	}
	s := e.batchStatus("b-flow", "?running=true")
	m := s.json(t)
	if s.status != http.StatusOK || m["state"] != "running" || m["pending"] != 3.0 || m["running"] != 0.0 || s.headers["Retry-After"] != "2" || m["status_url"] != want {
		t.Fatalf("GET batch before running = %d %v %s", s.status, s.headers, s.body)
	}
	e.runJobs()
	s = e.batchStatus("b-flow", "")
	m = s.json(t)
	fin, _ := m["finalizer"].(map[string]any)
	if m["state"] != "succeeded" || m["succeeded"] != 3.0 || m["pending"] != 0.0 || m["running"] != -1.0 || fin["state"] != "succeeded" {
		t.Fatalf("GET batch after running = %s", s.body)
	}
	if _, has := s.headers["Retry-After"]; has {
		t.Errorf("Retry-After on a finished batch: %v", s.headers)
	}
	if m["finalizer_status_url"] != base+"/b-flow-finalizer" {
		t.Errorf("finalizer_status_url = %v", m["finalizer_status_url"])
	}
	// The finalizer saw every child's result, in order.
	f := e.status("b-flow-finalizer", "").json(t)
	res, _ := f["result"].(map[string]any)
	if fmt.Sprint(res["json"]) != "map[joined:succeeded:a,succeeded:b,succeeded:c]" || f["batch_url"] != want {
		t.Fatalf("finalizer status %v", f)
	}
	if c := e.status("b-flow-1", "").json(t); c["batch_url"] != want || c["max_attempts"] != 2.0 {
		t.Errorf("child status %v", c)
	}
}

// Posting the same batch id again resumes the start and enqueues nothing twice.
func TestBatchStartAgainResumes(t *testing.T) {
	e := newEnv(t)
	req := `{"batch_id":"b-again","children":[{"kind":"test.echo","args":{"text":"x"}},{"kind":"test.echo","args":{"text":"y"}}]}`
	if r := e.startBatch(req); r.status != http.StatusAccepted || r.json(t)["resumed"] != nil {
		t.Fatalf("first start = %d %s", r.status, r.body)
	}
	r := e.startBatch(req)
	if r.status != http.StatusAccepted || r.json(t)["resumed"] != true || r.json(t)["total"] != 2.0 {
		t.Fatalf("second start = %d %s", r.status, r.body)
	}
	p, err := testenv.QueueService(e.store).NewQueueClient(e.store.Layout.JobsQueue()).GetProperties(context.Background(), nil)
	if err != nil || *p.ApproximateMessagesCount != 2 {
		t.Fatalf("queue holds %v messages (%v), want 2", p.ApproximateMessagesCount, err)
	}
}

func TestBatchProblems(t *testing.T) {
	e := newEnv(t)
	big := `{"children":[{"kind":"test.echo","args":"` + strings.Repeat("x", httpapi.MaxBatchRequestBytes) + `"}]}`
	cases := []struct {
		name, body   string
		status       int
		kind, detail string
		fields       []string
	}{
		{"not json", `[`, 400, "invalid-request", "not a JSON object", nil},
		{"no children", `{"finalizer":{"kind":"test.join"}}`, 400, "invalid-request", "children is required", []string{"children", "required"}},
		{"children not array", `{"children":{"kind":"test.echo"}}`, 400, "invalid-request", "children", []string{"children", "expected an array"}},
		{"child without kind", `{"children":[{"kind":"test.echo"},{"args":{}}]}`, 400, "invalid-request", "children[1].kind", []string{"children[1].kind", "required"}},
		{"child sets its id", `{"children":[{"kind":"test.echo","job_id":"mine","run_in_seconds":5}]}`, 400, "invalid-request", "belongs to the batch",
			[]string{"children[0].job_id", "belongs to the batch", "children[0].run_in_seconds", "belongs to the batch"}},
		{"child unknown field", `{"children":[{"kind":"test.echo","argz":{}}]}`, 400, "invalid-request", "unknown field", []string{"children[0].argz", "unknown field"}},
		{"unknown kind", `{"children":[{"kind":"test.nope"}],"finalizer":{"kind":"test.nope2"}}`, 400, "invalid-request", "not a kind this app runs",
			[]string{"children[0].kind", "test.nope", "finalizer.kind", "test.nope2"}},
		{"reserved kind", `{"children":[{"kind":"nightshift.callback"}]}`, 400, "invalid-request", "reserved", []string{"children[0].kind", "reserved"}},
		{"bad policy", `{"children":[],"failure_policy":"sometimes","allowed_failures":-1}`, 400, "invalid-request", "failure_policy",
			[]string{"failure_policy", `"sometimes"`, "allowed_failures", "0 or more"}},
		{"queue and priority", `{"children":[],"queue":"x","priority":"high"}`, 400, "invalid-request", "not both", []string{"priority", "not both"}},
		{"unknown top field", `{"children":[],"childs":[]}`, 400, "invalid-request", "unknown field", []string{"childs", "unknown field"}},
		{"bad batch id", `{"children":[],"batch_id":"has space"}`, 400, "invalid-request", "batch_id", nil},
		{"too large", big, 413, "too-large", "at most", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			checkProblem(t, e.startBatch(c.body), c.status, c.kind, c.detail, c.fields...)
		})
	}
	t.Run("form body", func(t *testing.T) {
		r := e.call(httpapi.FunctionBatchStart, "POST", batchesBase, "children=1", nil, map[string][]string{"Content-Type": {"application/x-www-form-urlencoded"}})
		checkProblem(t, r, http.StatusUnsupportedMediaType, "unsupported-media-type", "application/json")
	})
	t.Run("unknown batch", func(t *testing.T) {
		checkProblem(t, e.batchStatus("no-such-batch", ""), http.StatusNotFound, "batch-not-found", "no-such-batch")
	})
	t.Run("wrong method", func(t *testing.T) {
		r := e.call(httpapi.FunctionBatchStatus, "POST", batchesBase+"/x", "", map[string]string{"id": "x"}, nil)
		checkProblem(t, r, http.StatusMethodNotAllowed, "method-not-allowed", "use GET")
	})
}
