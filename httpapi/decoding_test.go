package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nightshift-jobs/nightshift/envelope"
)

// bigMeta is meta within its per-entry bounds that together overflows a queue message.
func bigMeta() string {
	m := map[string]string{}
	for i := 0; i < envelope.MaxMetaEntries; i++ {
		m[fmt.Sprintf("k%02d", i)] = strings.Repeat("x", envelope.MaxMetaValueBytes)
	}
	b, _ := json.Marshal(m)
	return string(b)
}

// Strict decoding of request bodies: a duplicate key (anywhere, args included) and every
// number past its bound is a 400 naming the field and the bound, and nothing is enqueued.
func TestEnqueueRefusesDuplicatesAndOutOfBoundsValues(t *testing.T) {
	e := newEnv(t)
	far := time.Now().Add(envelope.MaxScheduleAhead + 24*time.Hour).UTC().Format(time.RFC3339)
	cases := []struct {
		name, body, field, problem string
	}{
		{"duplicate kind", `{"kind":"test.echo","kind":"nightshift.callback"}`, "kind", "duplicate key"},
		{"duplicate in args", `{"kind":"test.echo","args":{"user":{"id":1,"id":2}}}`, "args.user.id", "duplicate key"},
		{"duplicate in callback", `{"kind":"test.echo","callback":{"url":"https://a.test","url":"https://b.test"}}`, "callback.url", "duplicate key"},
		{"deep args", `{"kind":"test.echo","args":` + strings.Repeat("[", envelope.MaxDepth) + strings.Repeat("]", envelope.MaxDepth) + `}`, "args" + strings.Repeat("[0]", envelope.MaxDepth-1), "deeper than 64"},
		{"timeout 1e300", `{"kind":"test.echo","timeout_seconds":1e300}`, "timeout_seconds", "at most 604800 seconds"},
		{"timeout 1e400", `{"kind":"test.echo","timeout_seconds":1e400}`, "timeout_seconds", "out of range"},
		{"timeout over 7 days", `{"kind":"test.echo","timeout_seconds":604801}`, "timeout_seconds", "7 days"},
		{"run in 1e300", `{"kind":"test.echo","run_in_seconds":1e300}`, "run_in_seconds", "at most 3.1536e+08 seconds (10 years"},
		{"run at far", `{"kind":"test.echo","run_at":"` + far + `"}`, "run_at", "more than 10 years ahead"},
		{"max attempts 101", `{"kind":"test.echo","max_attempts":101}`, "max_attempts", "at most 100 (envelope.MaxAttemptsLimit)"},
		{"max attempts 1e300", `{"kind":"test.echo","max_attempts":1e300}`, "max_attempts", "whole number from 1 to 100"},
		{"max attempts fraction", `{"kind":"test.echo","max_attempts":2.5}`, "max_attempts", "whole number from 1 to 100"},
		{"meta entries", `{"kind":"test.echo","meta":` + metaOf(envelope.MaxMetaEntries+1, 1) + `}`, "meta", "at most 64"},
		{"meta value", `{"kind":"test.echo","meta":` + metaOf(1, envelope.MaxMetaValueBytes+1) + `}`, "meta.k00", "at most 1024"},
		{"dedupe key", `{"kind":"test.echo","dedupe_key":"` + strings.Repeat("d", envelope.MaxDedupeKeyBytes+1) + `"}`, "dedupe_key", "at most 512"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			checkProblem(t, e.enqueue(c.body), http.StatusBadRequest, "invalid-request", c.field, c.field, c.problem)
		})
	}
	if d, err := e.client.QueueDepths(context.Background()); err != nil || d[0].Messages != 0 {
		t.Fatalf("depths = %+v, %v; nothing should have been enqueued", d, err)
	}
	// At the bounds, the job is accepted.
	ok := fmt.Sprintf(`{"kind":"test.echo","timeout_seconds":%d,"max_attempts":%d,"run_in_seconds":60,"meta":%s}`,
		envelope.MaxTimeoutSeconds, envelope.MaxAttemptsLimit, metaOf(envelope.MaxMetaEntries, 16))
	if r := e.enqueue(ok); r.status != http.StatusAccepted {
		t.Fatalf("at the bounds: %d %s", r.status, r.body)
	}
}

func TestBatchRefusesDuplicatesAndOutOfBoundsValues(t *testing.T) {
	e := newEnv(t)
	children := strings.TrimSuffix(strings.Repeat(`{"kind":"test.echo"},`, envelope.MaxBatchChildren+1), ",")
	cases := []struct {
		name, body, field, problem string
	}{
		{"duplicate children", `{"children":[],"children":[{"kind":"test.echo"}]}`, "children", "duplicate key"},
		{"duplicate in a child", `{"children":[{"kind":"test.echo"},{"kind":"test.echo","args":{"a":1,"a":2}}]}`, "children[1].args.a", "duplicate key"},
		{"too many children", `{"children":[` + children + `]}`, "children", "at most 10000 per batch"},
		{"child timeout", `{"children":[{"kind":"test.echo","timeout_seconds":1e300}]}`, "children[0].timeout_seconds", "at most 604800 seconds"},
		{"child attempts", `{"children":[{"kind":"test.echo"}],"finalizer":{"kind":"test.join","max_attempts":1000}}`, "finalizer.max_attempts", "at most 100"},
		{"allowed failures", `{"children":[],"allowed_failures":1e300}`, "allowed_failures", "whole number from 0 to 10000"},
		{"child meta", `{"children":[{"kind":"test.echo","meta":` + metaOf(envelope.MaxMetaEntries+1, 1) + `}]}`, "children[0].meta", "at most 64"},
		{"batch meta", `{"children":[],"meta":{"":"x"}}`, "meta", "empty key"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			checkProblem(t, e.startBatch(c.body), http.StatusBadRequest, "invalid-request", c.field, c.field, c.problem)
		})
	}
	if d, err := e.client.QueueDepths(context.Background()); err != nil || d[0].Messages != 0 {
		t.Fatalf("depths = %+v, %v; nothing should have been enqueued", d, err)
	}
}

func metaOf(n, valueBytes int) string {
	m := map[string]string{}
	for i := 0; i < n; i++ {
		m[fmt.Sprintf("k%02d", i)] = strings.Repeat("v", valueBytes)
	}
	b, _ := json.Marshal(m)
	return string(b)
}
