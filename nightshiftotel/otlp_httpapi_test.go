package nightshiftotel_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/httpapi"
	"github.com/nightshift-jobs/nightshift/internal/testenv"
	"github.com/nightshift-jobs/nightshift/nightshiftotel"
	"github.com/nightshift-jobs/nightshift/storage"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// The HTTP-API trace, read from the OTLP/HTTP payloads Setup's exporter posts to a
// receiver in the test process (not from an in-memory recorder): a traced caller enqueues
// a job that fails once, then succeeds, and another that dies. Each job's trace holds the
// caller's span, the enqueue span (a child of the request's traceparent) and its attempt
// spans with their messaging attributes; the failed attempts and the dead letter carry
// the error. The API's server span ("POST /api/jobs", with its route and status) is a
// child of the caller's span and the parent of the enqueue span.
func TestHTTPEnqueueTraceExportedOverOTLP(t *testing.T) {
	recv, shutdown, obs := setupOTLPHTTP(t, "OTEL_METRICS_EXPORTER", "none")
	ctx := context.Background()
	st, err := storage.NewMemory("", time.Now)
	if err != nil {
		t.Fatal(err)
	}
	reg := nightshift.NewRegistry()
	opts := &nightshift.WorkerOptions{Backoff: nightshift.ConstantBackoff(0), MaxAttempts: 2}
	nightshift.AddWorkerFunc(reg, func(ctx context.Context, job *nightshift.Job[flakyArgs]) (any, error) {
		if job.Attempt == 1 {
			return nil, errFirst
		}
		return "ok", nil
	}, opts)
	nightshift.AddWorkerFunc(reg, func(ctx context.Context, job *nightshift.Job[doomedArgs]) (any, error) {
		return nil, errAlways
	}, opts)
	app, err := nightshift.NewApp(reg, nightshift.Config{Getenv: func(string) string { return "" }, Store: st, Observer: obs,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Features: []nightshift.Feature{httpapi.Feature(nil)}})
	if err != nil {
		t.Fatal(err)
	}
	flaky := httpEnqueueTraced(t, app.Handler(), `{"kind":"test.flaky","args":{"N":1}}`)
	doomed := httpEnqueueTraced(t, app.Handler(), `{"kind":"test.doomed","args":{}}`)
	testenv.Drain(t, st, app.Handler(), st.Layout.JobsQueue(), nightshift.FunctionRunJob, nightshift.FunctionRunDeadLetter)
	if err := shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	recv.mu.Lock()
	defer recv.mu.Unlock()
	queue := st.Layout.JobsQueue()

	tr := otlpTrace(t, recv.spans, flaky)
	procs := tr.attempts(t, queue, 2)
	checkAttempt(t, procs[0], "1", "retrying", errFirst.Error())
	checkAttempt(t, procs[1], "2", "succeeded", "")
	if len(tr.dead) != 0 {
		t.Errorf("flaky job: %d dead_letter spans, want none", len(tr.dead))
	}

	tr = otlpTrace(t, recv.spans, doomed)
	procs = tr.attempts(t, queue, 2)
	checkAttempt(t, procs[0], "1", "retrying", errAlways.Error())
	checkAttempt(t, procs[1], "2", "dead", errAlways.Error())
	if got := pbAttr(procs[1], nightshiftotel.KeyDeadReason); got != "attempts_exhausted" {
		t.Errorf("last attempt %s = %q", nightshiftotel.KeyDeadReason, got)
	}
	if len(tr.dead) != 1 || tr.dead[0].GetStatus().GetCode() != tracepb.Status_STATUS_CODE_ERROR ||
		pbAttr(tr.dead[0], nightshiftotel.KeyDeadReason) != "attempts_exhausted" || pbAttr(tr.dead[0], nightshiftotel.KeyOperationName) != "dead_letter" {
		t.Errorf("doomed job: dead_letter spans %v, want one with an error status", tr.dead)
	}
}

// httpEnqueueTraced plays POST /api/jobs through the handler with a traceparent header
// from a client span of the global tracer provider ("POST /api/jobs"), and returns that
// span's context.
func httpEnqueueTraced(t *testing.T, h http.Handler, body string) trace.SpanContext {
	t.Helper()
	ctx, caller := otel.Tracer("caller").Start(context.Background(), "POST /api/jobs", trace.WithSpanKind(trace.SpanKindClient))
	hdr := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, hdr)
	caller.End()
	req := map[string]any{"Url": "http://localhost:7071/api/jobs", "Method": "POST", "Query": map[string]string{},
		"Headers": map[string][]string{"Content-Type": {"application/json"}, "traceparent": {hdr["traceparent"]}},
		"Params":  map[string]string{}, "Identities": []any{}, "Body": body}
	inv, _ := json.Marshal(map[string]any{"Data": map[string]any{"req": req},
		"Metadata": map[string]any{"sys": map[string]string{"MethodName": httpapi.FunctionEnqueue}}})
	hr := httptest.NewRequest(http.MethodPost, "/"+httpapi.FunctionEnqueue, bytes.NewReader(inv))
	hr.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, hr)
	if rec.Code != http.StatusOK || !bytes.Contains(rec.Body.Bytes(), []byte(`202`)) {
		t.Fatalf("enqueue invocation = %d %s", rec.Code, rec.Body.String())
	}
	return caller.SpanContext()
}

// pbTrace is one exported trace, split by kind.
type pbTrace struct {
	server *tracepb.Span // the API's span of the request
	send   *tracepb.Span
	procs  []*tracepb.Span // the attempts, in start order
	dead   []*tracepb.Span
}

// otlpTrace picks the exported spans of the caller's trace: the caller's client span
// itself, exactly one server span that is its child (the API's), exactly one producer
// span that is the server span's child, and the consumer spans.
func otlpTrace(t *testing.T, spans []*tracepb.Span, caller trace.SpanContext) pbTrace {
	t.Helper()
	tid, sid := caller.TraceID().String(), caller.SpanID().String()
	var tr pbTrace
	var callers, servers, sends int
	for _, s := range spans {
		if hex.EncodeToString(s.TraceId) != tid {
			continue
		}
		switch {
		case hex.EncodeToString(s.SpanId) == sid:
			callers++
			if s.Name != "POST /api/jobs" || s.Kind != tracepb.Span_SPAN_KIND_CLIENT {
				t.Errorf("caller span = %q %v", s.Name, s.Kind)
			}
		case s.Kind == tracepb.Span_SPAN_KIND_SERVER:
			servers++
			tr.server = s
		case s.Kind == tracepb.Span_SPAN_KIND_PRODUCER:
			sends++
			tr.send = s
		case strings.HasPrefix(s.Name, "dead_letter "):
			tr.dead = append(tr.dead, s)
		case s.Kind == tracepb.Span_SPAN_KIND_CONSUMER:
			tr.procs = append(tr.procs, s)
		default:
			t.Errorf("unexpected span %q (%v) in the trace", s.Name, s.Kind)
		}
	}
	if callers != 1 || servers != 1 || sends != 1 {
		t.Fatalf("trace %s: %d caller spans, %d server spans, %d send spans; want one each", tid, callers, servers, sends)
	}
	if hex.EncodeToString(tr.server.ParentSpanId) != sid {
		t.Errorf("server span's parent = %x, want the caller's span %s", tr.server.ParentSpanId, sid)
	}
	if tr.server.Name != "POST /api/jobs" || pbAttr(tr.server, nightshiftotel.KeyHTTPRoute) != "/api/jobs" ||
		pbAttr(tr.server, nightshiftotel.KeyHTTPMethod) != "POST" || pbAttr(tr.server, nightshiftotel.KeyHTTPStatusCode) != "202" ||
		pbAttr(tr.server, nightshiftotel.KeyFunction) != httpapi.FunctionEnqueue || tr.server.GetStatus().GetCode() == tracepb.Status_STATUS_CODE_ERROR {
		t.Errorf("server span %q: attributes %v, status %v", tr.server.Name, tr.server.Attributes, tr.server.GetStatus())
	}
	if !bytes.Equal(tr.send.ParentSpanId, tr.server.SpanId) {
		t.Errorf("send span's parent = %x, want the server span %x", tr.send.ParentSpanId, tr.server.SpanId)
	}
	sort.Slice(tr.procs, func(i, j int) bool { return tr.procs[i].StartTimeUnixNano < tr.procs[j].StartTimeUnixNano })
	return tr
}

// attempts checks the send span's and the n attempt spans' messaging attributes and
// parentage, and returns the attempts in start order.
func (tr pbTrace) attempts(t *testing.T, queue string, n int) []*tracepb.Span {
	t.Helper()
	if tr.send.Name != "send "+queue || pbAttr(tr.send, nightshiftotel.KeyMessagingSystem) != nightshiftotel.MessagingSystem ||
		pbAttr(tr.send, nightshiftotel.KeyOperationType) != "send" || pbAttr(tr.send, nightshiftotel.KeyDestination) != queue {
		t.Errorf("send span %q: attributes %v", tr.send.Name, tr.send.Attributes)
	}
	if len(tr.procs) != n {
		t.Fatalf("%d attempt spans, want %d", len(tr.procs), n)
	}
	for _, p := range tr.procs {
		if p.Name != "process "+queue || pbAttr(p, nightshiftotel.KeyMessagingSystem) != nightshiftotel.MessagingSystem ||
			pbAttr(p, nightshiftotel.KeyOperationType) != "process" || pbAttr(p, nightshiftotel.KeyDestination) != queue ||
			pbAttr(p, nightshiftotel.KeyMessageID) == "" || pbAttr(p, nightshiftotel.KeyJobID) != pbAttr(tr.send, nightshiftotel.KeyJobID) {
			t.Errorf("attempt span %q: attributes %v", p.Name, p.Attributes)
		}
		if !bytes.Equal(p.ParentSpanId, tr.send.SpanId) {
			t.Errorf("attempt %s: parent %x, want the send span %x", pbAttr(p, nightshiftotel.KeyAttempt), p.ParentSpanId, tr.send.SpanId)
		}
	}
	return tr.procs
}

// checkAttempt checks an attempt span's number and outcome, and that it carries the error
// (status, exception event, error.type) when wantErr is set and none otherwise.
func checkAttempt(t *testing.T, p *tracepb.Span, attempt, outcome, wantErr string) {
	t.Helper()
	if got := pbAttr(p, nightshiftotel.KeyAttempt); got != attempt {
		t.Errorf("attempt = %q, want %s", got, attempt)
	}
	if got := pbAttr(p, nightshiftotel.KeyOutcome); got != outcome {
		t.Errorf("attempt %s: outcome %q, want %s", attempt, got, outcome)
	}
	st := p.GetStatus()
	if wantErr == "" {
		if st.GetCode() == tracepb.Status_STATUS_CODE_ERROR || exceptionMessage(p) != "" {
			t.Errorf("attempt %s: status %v, exception %q; want no error", attempt, st, exceptionMessage(p))
		}
		return
	}
	if st.GetCode() != tracepb.Status_STATUS_CODE_ERROR || st.GetMessage() != wantErr || pbAttr(p, nightshiftotel.KeyErrorType) == "" {
		t.Errorf("attempt %s: status %v, error.type %q; want the error %q", attempt, st, pbAttr(p, nightshiftotel.KeyErrorType), wantErr)
	}
	if msg := exceptionMessage(p); msg != wantErr {
		t.Errorf("attempt %s: exception event message %q, want %q", attempt, msg, wantErr)
	}
}

// exceptionMessage is the message of an exported span's exception event ("" when none).
func exceptionMessage(p *tracepb.Span) string {
	for _, e := range p.Events {
		if e.Name != "exception" {
			continue
		}
		for _, kv := range e.Attributes {
			if kv.Key == "exception.message" {
				return kv.GetValue().GetStringValue()
			}
		}
	}
	return ""
}

// errAlways is the doomed job's error.
var errAlways = errors.New("always fails")

// pbAttr returns an exported span's attribute as a string ("" when absent).
func pbAttr(s *tracepb.Span, key attribute.Key) string {
	for _, kv := range s.Attributes {
		if kv.Key != string(key) {
			continue
		}
		switch v := kv.GetValue().GetValue().(type) {
		case *commonpb.AnyValue_StringValue:
			return v.StringValue
		case *commonpb.AnyValue_IntValue:
			return strconv.FormatInt(v.IntValue, 10)
		case *commonpb.AnyValue_BoolValue:
			return strconv.FormatBool(v.BoolValue)
		case *commonpb.AnyValue_DoubleValue:
			return strconv.FormatFloat(v.DoubleValue, 'g', -1, 64)
		}
	}
	return ""
}
