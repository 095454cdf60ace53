package httpapi_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/nightshift-jobs/nightshift/httpapi"
)

const pausesURL = "https://app.example.test/api/pauses"

// POST /api/pauses pauses a kind and a queue, GET /api/pauses lists them, POST
// /api/pauses/resume resumes one; the Go client sees the same record. Bad bodies are
// problem+json naming the field (Azurite).
func TestPausesRoute(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	answer := func(r response) httpapi.PausesResponse {
		t.Helper()
		if r.status != http.StatusOK {
			t.Fatalf("answer %d %s", r.status, r.body)
		}
		var p httpapi.PausesResponse
		if err := json.Unmarshal(r.body, &p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if p := answer(e.call(httpapi.FunctionPauses, "GET", pausesURL, "", nil, nil)); len(p.Kinds)+len(p.Queues) != 0 {
		t.Fatalf("fresh pauses %+v", p)
	}
	answer(e.call(httpapi.FunctionPause, "POST", pausesURL, `{"kind":"test.echo"}`, nil, nil))
	low := e.store.Layout.JobsQueue() + "-low"
	p := answer(e.call(httpapi.FunctionPause, "POST", pausesURL, `{"queue":"`+low+`"}`, nil, nil))
	if p.Kinds["test.echo"].IsZero() || p.Queues[low].IsZero() {
		t.Fatalf("after pausing: %+v", p)
	}
	if cp, err := e.client.Pauses(ctx); err != nil || cp.Kinds["test.echo"].IsZero() {
		t.Fatalf("client sees %+v %v", cp, err)
	}
	p = answer(e.call(httpapi.FunctionResume, "POST", pausesURL+"/resume", `{"kind":"test.echo"}`, nil, nil))
	if _, ok := p.Kinds["test.echo"]; ok || p.Queues[low].IsZero() {
		t.Fatalf("after resuming the kind: %+v", p)
	}
	if p := answer(e.call(httpapi.FunctionPauses, "GET", pausesURL, "", nil, nil)); len(p.Kinds) != 0 || len(p.Queues) != 1 {
		t.Fatalf("listed %+v", p)
	}

	bad := e.call(httpapi.FunctionPause, "POST", pausesURL, `{"kind":"test.echo","queue":"jobs"}`, nil, nil)
	if bad.status != http.StatusBadRequest || bad.headers["Content-Type"] != "application/problem+json" || !strings.Contains(string(bad.body), `"field":"kind"`) {
		t.Fatalf("bad body: %d %v %s", bad.status, bad.headers, bad.body)
	}
	if r := e.call(httpapi.FunctionPause, "GET", pausesURL, "", nil, nil); r.status != http.StatusMethodNotAllowed {
		t.Fatalf("GET on the pause function: %d %s", r.status, r.body)
	}
	if r := e.call(httpapi.FunctionResume, "POST", pausesURL+"/resume", strings.Repeat(" ", httpapi.MaxPauseRequestBytes+1), nil, nil); r.status != http.StatusRequestEntityTooLarge {
		t.Fatalf("large body: %d %s", r.status, r.body)
	}
}
