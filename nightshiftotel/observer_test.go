package nightshiftotel_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/envelope"
	"github.com/nightshift-jobs/nightshift/nightshiftotel"
	"github.com/nightshift-jobs/nightshift/nightshifttest"
	"github.com/nightshift-jobs/nightshift/record"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

type flakyArgs struct{ N int }

func (flakyArgs) Kind() string { return "test.flaky" }

type doomedArgs struct{}

func (doomedArgs) Kind() string { return "test.doomed" }

// syncBuf is a log sink for concurrent writers.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) lines(t *testing.T) []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(s.b.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

// kit is an in-memory app observed by an Observer on SDK providers that record in memory.
type kit struct {
	app    *nightshifttest.App
	obs    *nightshiftotel.Observer
	spans  *tracetest.SpanRecorder
	reader *sdkmetric.ManualReader
	tp     *sdktrace.TracerProvider
	logs   *syncBuf
}

func newKit(t *testing.T) *kit {
	t.Helper()
	k := &kit{spans: tracetest.NewSpanRecorder(), reader: sdkmetric.NewManualReader(), logs: &syncBuf{}}
	k.tp = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(k.spans))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(k.reader))
	obs, err := nightshiftotel.New(&nightshiftotel.Options{TracerProvider: k.tp, MeterProvider: mp})
	if err != nil {
		t.Fatal(err)
	}
	k.obs = obs
	reg := nightshift.NewRegistry()
	fast := &nightshift.WorkerOptions{Backoff: nightshift.ConstantBackoff(0), MaxAttempts: 2}
	nightshift.AddWorkerFunc(reg, func(ctx context.Context, job *nightshift.Job[flakyArgs]) (any, error) {
		job.Logger.Info("flaky working")
		if job.Attempt == 1 {
			return nil, errors.New("first attempt fails")
		}
		return "ok", nil
	}, fast)
	nightshift.AddWorkerFunc(reg, func(ctx context.Context, job *nightshift.Job[doomedArgs]) (any, error) {
		job.Logger.Info("doomed working")
		return nil, errors.New("always fails")
	}, fast)
	log := slog.New(nightshiftotel.LogHandler(slog.NewJSONHandler(k.logs, nil)))
	app, err := nightshifttest.NewApp(reg, &nightshifttest.AppOptions{Logger: log, Handler: nightshift.HandlerOptions{Observer: obs}})
	if err != nil {
		t.Fatal(err)
	}
	k.app = app
	return k
}

func (k *kit) drain(t *testing.T) {
	t.Helper()
	if _, err := k.app.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// attr returns a span attribute's value as a string ("" when absent).
func attr(s sdktrace.ReadOnlySpan, key attribute.Key) string {
	for _, kv := range s.Attributes() {
		if kv.Key == key {
			return kv.Value.String()
		}
	}
	return ""
}

// spansOf returns the ended spans of a trace with the given name prefix, in end order.
func (k *kit) spansOf(tid trace.TraceID, prefix string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range k.spans.Ended() {
		if s.SpanContext().TraceID() == tid && strings.HasPrefix(s.Name(), prefix) {
			out = append(out, s)
		}
	}
	return out
}

// An enqueue under a span gives a producer span under it, and the job's two attempts (the
// first failed and retried) are consumer spans in the same trace, children of the
// producer span, with the messaging and job attributes; every log line of the job
// carries the trace and span ids of its attempt.
func TestRetriedJobIsOneTrace(t *testing.T) {
	k := newKit(t)
	ctx, root := k.tp.Tracer("test").Start(context.Background(), "request")
	res, err := k.app.Client.Enqueue(ctx, flakyArgs{N: 1}, nil)
	root.End()
	if err != nil {
		t.Fatal(err)
	}
	k.drain(t)
	tid := root.SpanContext().TraceID()
	send := k.spansOf(tid, "send ")
	if len(send) != 1 || send[0].SpanKind() != trace.SpanKindProducer || send[0].Parent().SpanID() != root.SpanContext().SpanID() ||
		attr(send[0], nightshiftotel.KeyJobID) != res.JobID || attr(send[0], nightshiftotel.KeyOperationType) != "send" {
		t.Fatalf("producer spans = %v", names(send))
	}
	procs := k.spansOf(tid, "process ")
	if len(procs) != 2 {
		t.Fatalf("attempt spans in the trace = %v, want 2", names(k.spans.Ended()))
	}
	want := []map[attribute.Key]string{
		{nightshiftotel.KeyAttempt: "1", nightshiftotel.KeyOutcome: "retrying", nightshiftotel.KeyErrorType: "retryable"},
		{nightshiftotel.KeyAttempt: "2", nightshiftotel.KeyOutcome: "succeeded", nightshiftotel.KeyErrorType: ""},
	}
	for i, s := range procs {
		if s.SpanKind() != trace.SpanKindConsumer || s.Parent().SpanID() != send[0].SpanContext().SpanID() || s.Name() != "process "+res.Queue {
			t.Errorf("attempt %d: span %q kind %v parent %v", i+1, s.Name(), s.SpanKind(), s.Parent().SpanID())
		}
		for key, v := range map[attribute.Key]string{
			nightshiftotel.KeyMessagingSystem: nightshiftotel.MessagingSystem, nightshiftotel.KeyDestination: res.Queue,
			nightshiftotel.KeyOperationType: "process", nightshiftotel.KeyJobID: res.JobID, nightshiftotel.KeyKind: "test.flaky",
			nightshiftotel.KeyDequeueCount: "1",
		} {
			if got := attr(s, key); got != v {
				t.Errorf("attempt %d: %s = %q, want %q", i+1, key, got, v)
			}
		}
		for key, v := range want[i] {
			if got := attr(s, key); got != v {
				t.Errorf("attempt %d: %s = %q, want %q", i+1, key, got, v)
			}
		}
		if attr(s, nightshiftotel.KeyMessageID) == "" {
			t.Errorf("attempt %d has no messaging.message.id", i+1)
		}
	}
	// Log lines of the job carry the ids of their attempt's span.
	spanIDs := map[string]bool{procs[0].SpanContext().SpanID().String(): true, procs[1].SpanContext().SpanID().String(): true}
	n := 0
	for _, l := range k.logs.lines(t) {
		if l["job_id"] != res.JobID {
			continue
		}
		n++
		if l["trace_id"] != tid.String() || !spanIDs[l["span_id"].(string)] {
			t.Errorf("log line %v lacks the attempt's trace and span ids", l)
		}
	}
	if n < 4 {
		t.Errorf("%d log lines of the job, want at least 4 (two worker lines, two outcomes)", n)
	}
}

func names(spans []sdktrace.ReadOnlySpan) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name())
	}
	return out
}

// A job that dies: its attempts and its dead letter are spans of the producer's trace,
// the last attempt and the dead letter carry the error.
func TestDeadJobSharesTheTrace(t *testing.T) {
	k := newKit(t)
	ctx, root := k.tp.Tracer("test").Start(context.Background(), "request")
	res, err := k.app.Client.Enqueue(ctx, doomedArgs{}, nil)
	root.End()
	if err != nil {
		t.Fatal(err)
	}
	k.drain(t)
	tid := root.SpanContext().TraceID()
	procs := k.spansOf(tid, "process ")
	if len(procs) != 2 || attr(procs[0], nightshiftotel.KeyOutcome) != "retrying" || attr(procs[1], nightshiftotel.KeyOutcome) != "dead" ||
		attr(procs[1], nightshiftotel.KeyDeadReason) != "attempts_exhausted" {
		t.Fatalf("attempt spans = %v", names(procs))
	}
	if procs[1].Status().Code.String() != "Error" || !strings.Contains(procs[1].Status().Description, "always fails") {
		t.Errorf("last attempt status = %+v", procs[1].Status())
	}
	dead := k.spansOf(tid, "dead_letter ")
	if len(dead) != 1 || attr(dead[0], nightshiftotel.KeyJobID) != res.JobID || attr(dead[0], nightshiftotel.KeyDeadReason) != "attempts_exhausted" ||
		attr(dead[0], nightshiftotel.KeyDeadLetterRecorded) != "true" || dead[0].Status().Code.String() != "Error" {
		t.Fatalf("dead-letter spans = %v", names(k.spans.Ended()))
	}
}

// Metrics after a known mix: one job retried then succeeded, one dead after two
// attempts, and one job left on the queue for the depth gauge.
func TestMetricsCounted(t *testing.T) {
	k := newKit(t)
	k.obs.WatchQueues(k.app.Client)
	ctx := context.Background()
	if _, err := k.app.Client.Enqueue(ctx, flakyArgs{}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := k.app.Client.Enqueue(ctx, doomedArgs{}, nil); err != nil {
		t.Fatal(err)
	}
	k.drain(t)
	if _, err := k.app.Client.Enqueue(ctx, flakyArgs{}, nil); err != nil {
		t.Fatal(err)
	}
	var rm metricdata.ResourceMetrics
	if err := k.reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	sums := map[string]int64{}
	hist := map[string]uint64{}
	depth := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					kind, _ := p.Attributes.Value(nightshiftotel.KeyKind)
					sums[m.Name+"/"+kind.AsString()] += p.Value
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					hist[m.Name] += p.Count
				}
			case metricdata.Gauge[int64]:
				for _, p := range d.DataPoints {
					q, _ := p.Attributes.Value(nightshiftotel.KeyDestination)
					depth[q.AsString()] = p.Value
				}
			}
		}
	}
	for key, want := range map[string]int64{
		nightshiftotel.MetricStarted + "/test.flaky": 2, nightshiftotel.MetricStarted + "/test.doomed": 2,
		nightshiftotel.MetricSucceeded + "/test.flaky": 1, nightshiftotel.MetricSucceeded + "/test.doomed": 0,
		nightshiftotel.MetricRetried + "/test.flaky": 1, nightshiftotel.MetricRetried + "/test.doomed": 1,
		nightshiftotel.MetricDead + "/test.doomed": 1, nightshiftotel.MetricDead + "/test.flaky": 0,
		nightshiftotel.MetricInFlight + "/test.flaky": 0, nightshiftotel.MetricInFlight + "/test.doomed": 0,
	} {
		if sums[key] != want {
			t.Errorf("%s = %d, want %d (all: %v)", key, sums[key], want, sums)
		}
	}
	if hist[nightshiftotel.MetricDuration] != 4 || hist[nightshiftotel.MetricLatency] != 2 {
		t.Errorf("histogram counts = %v; want 4 run durations and 2 first-attempt latencies", hist)
	}
	jobs := k.app.Storage().Layout.JobsQueue()
	if depth[jobs] != 1 || depth[k.app.Storage().Layout.PoisonQueue(jobs)] != 0 {
		t.Errorf("queue depths = %v; want 1 job on %s and an empty poison queue", depth, jobs)
	}
}

// The job-end callback hook's outcomes are counted by kind, state and outcome.
func TestCallbacksCounted(t *testing.T) {
	spans := tracetest.NewSpanRecorder()
	reader := sdkmetric.NewManualReader()
	obs, err := nightshiftotel.New(&nightshiftotel.Options{
		TracerProvider: sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans)),
		MeterProvider:  sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)),
	})
	if err != nil {
		t.Fatal(err)
	}
	reg := nightshift.NewRegistry()
	nightshift.AddWorkerFunc(reg, func(ctx context.Context, job *nightshift.Job[flakyArgs]) (any, error) { return "ok", nil }, nil)
	app, err := nightshifttest.NewApp(reg, &nightshifttest.AppOptions{Handler: nightshift.HandlerOptions{Observer: obs,
		OnJobEnd: func(context.Context, *envelope.Envelope, *record.Status) error { return nil }}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := app.Client.Enqueue(ctx, flakyArgs{}, &nightshift.EnqueueOptions{CallbackQueue: "done"}); err != nil {
		t.Fatal(err)
	}
	if _, err := app.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	var got int64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if s, ok := m.Data.(metricdata.Sum[int64]); ok && m.Name == nightshiftotel.MetricCallbacks {
				for _, p := range s.DataPoints {
					st, _ := p.Attributes.Value(nightshiftotel.KeyState)
					oc, _ := p.Attributes.Value(nightshiftotel.KeyCallbackOutcome)
					if st.AsString() == "succeeded" && oc.AsString() == "enqueued" {
						got += p.Value
					}
				}
			}
		}
	}
	if got != 1 {
		t.Errorf("callbacks counted = %d, want 1 succeeded/enqueued", got)
	}
}

// The job-end callback hook runs in a span of its own, a child of the attempt that ended
// the job, carrying the job's state and the hook's outcome.
func TestCallbackIsAChildSpan(t *testing.T) {
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	obs, err := nightshiftotel.New(&nightshiftotel.Options{TracerProvider: tp})
	if err != nil {
		t.Fatal(err)
	}
	reg := nightshift.NewRegistry()
	nightshift.AddWorkerFunc(reg, func(ctx context.Context, job *nightshift.Job[flakyArgs]) (any, error) { return "ok", nil }, nil)
	var hookSpan trace.SpanID
	app, err := nightshifttest.NewApp(reg, &nightshifttest.AppOptions{Handler: nightshift.HandlerOptions{Observer: obs,
		OnJobEnd: func(ctx context.Context, _ *envelope.Envelope, _ *record.Status) error {
			hookSpan = trace.SpanContextFromContext(ctx).SpanID()
			return nil
		}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, root := tp.Tracer("test").Start(context.Background(), "request")
	if _, err := app.Client.Enqueue(ctx, flakyArgs{}, &nightshift.EnqueueOptions{CallbackQueue: "done"}); err != nil {
		t.Fatal(err)
	}
	root.End()
	if _, err := app.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	byID := map[trace.SpanID]sdktrace.ReadOnlySpan{}
	var cbs []sdktrace.ReadOnlySpan
	for _, s := range spans.Ended() {
		byID[s.SpanContext().SpanID()] = s
		if strings.HasPrefix(s.Name(), "callback ") {
			cbs = append(cbs, s)
		}
	}
	if len(cbs) != 1 {
		t.Fatalf("callback spans = %v; want one", names(cbs))
	}
	cb := cbs[0]
	if parent := byID[cb.Parent().SpanID()]; parent == nil || parent.SpanKind() != trace.SpanKindConsumer || cb.SpanContext().TraceID() != root.SpanContext().TraceID() {
		t.Errorf("callback span: parent %v, want an attempt span of the job's trace", cb.Parent().SpanID())
	}
	if cb.Name() != "callback test.flaky" || attr(cb, nightshiftotel.KeyState) != "succeeded" || attr(cb, nightshiftotel.KeyJobID) == "" ||
		attr(cb, nightshiftotel.KeyCallbackOutcome) != "enqueued" || cb.Status().Code == codes.Error {
		t.Errorf("callback span %q: attributes %v, status %+v", cb.Name(), cb.Attributes(), cb.Status())
	}
	if hookSpan != cb.SpanContext().SpanID() {
		t.Errorf("the hook ran under span %v, want the callback span %v", hookSpan, cb.SpanContext().SpanID())
	}
}

// A delivery whose context has a span of its own (a traced invocation) keeps the attempt
// in the job's trace, a child of the enqueue, and links it to that span.
func TestAttemptLinksTheDeliverySpan(t *testing.T) {
	k := newKit(t)
	ctx, root := k.tp.Tracer("test").Start(context.Background(), "request")
	if _, err := k.app.Client.Enqueue(ctx, flakyArgs{}, nil); err != nil {
		t.Fatal(err)
	}
	root.End()
	dctx, delivery := k.tp.Tracer("test").Start(context.Background(), "invocation")
	if _, err := k.app.Drain(dctx); err != nil {
		t.Fatal(err)
	}
	delivery.End()
	var procs []sdktrace.ReadOnlySpan
	for _, s := range k.spans.Ended() {
		if s.SpanKind() == trace.SpanKindConsumer {
			procs = append(procs, s)
		}
	}
	if len(procs) != 2 {
		t.Fatalf("attempt spans = %v, want two", names(procs))
	}
	for _, p := range procs {
		if p.SpanContext().TraceID() != root.SpanContext().TraceID() {
			t.Errorf("attempt %s is in another trace than the enqueue", attr(p, nightshiftotel.KeyAttempt))
		}
		if l := p.Links(); len(l) != 1 || l[0].SpanContext.SpanID() != delivery.SpanContext().SpanID() {
			t.Errorf("attempt %s: links %v, want the delivery's span", attr(p, nightshiftotel.KeyAttempt), l)
		}
	}
}

var errFirst = errors.New("first attempt fails")
