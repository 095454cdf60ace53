package nightshiftotel_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/httpapi"
	"github.com/nightshift-jobs/nightshift/internal/testenv"
	"github.com/nightshift-jobs/nightshift/nightshiftotel"
	"github.com/nightshift-jobs/nightshift/storage"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// A job enqueued over the HTTP API by a traced caller (traceparent header), failed once,
// then succeeded: one trace with the caller's span, the API's server span (a child of the
// request's trace context), the enqueue (the server span's child) and two attempt spans,
// the first with the error.
func TestHTTPEnqueueContinuesTheCallersTrace(t *testing.T) {
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	obs, err := nightshiftotel.New(&nightshiftotel.Options{TracerProvider: tp})
	if err != nil {
		t.Fatal(err)
	}
	st, err := storage.NewMemory("", time.Now)
	if err != nil {
		t.Fatal(err)
	}
	reg := nightshift.NewRegistry()
	nightshift.AddWorkerFunc(reg, func(ctx context.Context, job *nightshift.Job[flakyArgs]) (any, error) {
		if job.Attempt == 1 {
			return nil, errFirst
		}
		return "ok", nil
	}, &nightshift.WorkerOptions{Backoff: nightshift.ConstantBackoff(0), MaxAttempts: 3})
	app, err := nightshift.NewApp(reg, nightshift.Config{Getenv: func(string) string { return "" }, Store: st, Observer: obs, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Features: []nightshift.Feature{httpapi.Feature(nil)}})
	if err != nil {
		t.Fatal(err)
	}
	// The caller's span, sent as traceparent on the HTTP request.
	ctx, caller := tp.Tracer("caller").Start(context.Background(), "POST /api/jobs", trace.WithSpanKind(trace.SpanKindClient))
	hdr := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, hdr)
	caller.End()
	req := map[string]any{"Url": "http://localhost:7071/api/jobs", "Method": "POST", "Query": map[string]string{},
		"Headers": map[string][]string{"Content-Type": {"application/json"}, "traceparent": {hdr["traceparent"]}},
		"Params":  map[string]string{}, "Identities": []any{}, "Body": `{"kind":"test.flaky","args":{"N":1}}`}
	inv, _ := json.Marshal(map[string]any{"Data": map[string]any{"req": req},
		"Metadata": map[string]any{"sys": map[string]string{"MethodName": httpapi.FunctionEnqueue}}})
	hr := httptest.NewRequest(http.MethodPost, "/"+httpapi.FunctionEnqueue, bytes.NewReader(inv))
	hr.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	app.Handler().ServeHTTP(rec, hr)
	if rec.Code != http.StatusOK || !bytes.Contains(rec.Body.Bytes(), []byte(`202`)) {
		t.Fatalf("enqueue invocation = %d %s", rec.Code, rec.Body.String())
	}
	testenv.Drain(t, st, app.Handler(), st.Layout.JobsQueue(), nightshift.FunctionRunJob, nightshift.FunctionRunDeadLetter)
	tid := caller.SpanContext().TraceID()
	var server, send, procs []sdktrace.ReadOnlySpan
	for _, s := range spans.Ended() {
		switch {
		case s.SpanContext().TraceID() != tid:
			t.Errorf("span %q is in another trace", s.Name())
		case s.SpanKind() == trace.SpanKindServer:
			server = append(server, s)
		case s.SpanKind() == trace.SpanKindProducer:
			send = append(send, s)
		case s.SpanKind() == trace.SpanKindConsumer:
			procs = append(procs, s)
		}
	}
	if len(server) != 1 || server[0].Parent().SpanID() != caller.SpanContext().SpanID() || !server[0].Parent().IsRemote() {
		t.Fatalf("server spans = %v; want one, a child of the caller's span", names(server))
	}
	if len(send) != 1 || send[0].Parent().SpanID() != server[0].SpanContext().SpanID() {
		t.Fatalf("enqueue spans = %v; want one, a child of the server span", names(send))
	}
	if len(procs) != 2 || attr(procs[0], nightshiftotel.KeyOutcome) != "retrying" || attr(procs[1], nightshiftotel.KeyOutcome) != "succeeded" {
		t.Fatalf("attempt spans = %v", names(procs))
	}
	for _, p := range procs {
		if p.Parent().SpanID() != send[0].SpanContext().SpanID() {
			t.Errorf("attempt %s: parent %v, want the enqueue span", attr(p, nightshiftotel.KeyAttempt), p.Parent().SpanID())
		}
	}
	if len(procs[0].Events()) == 0 || procs[0].Status().Description != errFirst.Error() {
		t.Errorf("first attempt: status %+v, events %d; want the error", procs[0].Status(), len(procs[0].Events()))
	}
}
