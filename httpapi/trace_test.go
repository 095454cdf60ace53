package httpapi_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/nightshift-jobs/nightshift/envelope"
	"github.com/nightshift-jobs/nightshift/httpapi"
	"github.com/nightshift-jobs/nightshift/internal/store"
	"github.com/nightshift-jobs/nightshift/internal/testenv"
)

// An enqueue request's traceparent and tracestate headers continue into the job's
// envelope (POST /api/jobs and POST /api/batches); a request without them enqueues
// untraced jobs.
func TestRequestTraceContinuesIntoEnvelope(t *testing.T) {
	e := newEnvOn(t, testenv.Memory(t))
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	h := map[string][]string{"Content-Type": {"application/json"}, "Traceparent": {tp}, "Tracestate": {"congo=t61rcWkgMzE"}}
	if r := e.call(httpapi.FunctionEnqueue, "POST", base, `{"kind":"test.echo","args":{"text":"hi"},"job_id":"traced"}`, nil, h); r.status != http.StatusAccepted {
		t.Fatalf("POST = %d %s", r.status, r.body)
	}
	if r := e.enqueue(`{"kind":"test.echo","args":{"text":"hi"},"job_id":"plain"}`); r.status != http.StatusAccepted {
		t.Fatalf("POST = %d %s", r.status, r.body)
	}
	if r := e.call(httpapi.FunctionBatchStart, "POST", batchesBase, `{"children":[{"kind":"test.echo","args":{"text":"c"}}]}`, nil, h); r.status != http.StatusAccepted {
		t.Fatalf("POST batch = %d %s", r.status, r.body)
	}
	msgs, err := e.store.Store().Peek(context.Background(), e.store.Layout.JobsQueue(), store.MaxReceive)
	if err != nil || len(msgs) != 3 {
		t.Fatalf("%d messages, %v; want 3", len(msgs), err)
	}
	for _, m := range msgs {
		env, err := envelope.Decode([]byte(m.Text))
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case env.JobID == "plain":
			if env.Trace != nil {
				t.Errorf("untraced request gave trace %+v", env.Trace)
			}
		case env.Trace == nil || env.Trace.Parent != tp || env.Trace.State != "congo=t61rcWkgMzE":
			t.Errorf("job %s: trace %+v, want the request's", env.JobID, env.Trace)
		}
	}
}
