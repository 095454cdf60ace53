package nightshiftotel_test

import (
	"context"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/nightshiftotel"
	"github.com/nightshift-jobs/nightshift/nightshifttest"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric/noop"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
	collmetric "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	colltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// otlpReceiver is an OTLP/HTTP receiver in the test process: it decodes the protobuf
// payloads the exporters post to /v1/traces and /v1/metrics.
type otlpReceiver struct {
	mu      sync.Mutex
	spans   []*tracepb.Span
	service string
	metrics map[string]bool
}

func (r *otlpReceiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	switch req.URL.Path {
	case "/v1/traces":
		var m colltrace.ExportTraceServiceRequest
		if err := proto.Unmarshal(body, &m); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		for _, rs := range m.ResourceSpans {
			for _, kv := range rs.GetResource().GetAttributes() {
				if kv.Key == "service.name" {
					r.service = kv.GetValue().GetStringValue()
				}
			}
			for _, ss := range rs.ScopeSpans {
				r.spans = append(r.spans, ss.Spans...)
			}
		}
		out, _ := proto.Marshal(&colltrace.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(out)
	case "/v1/metrics":
		var m collmetric.ExportMetricsServiceRequest
		if err := proto.Unmarshal(body, &m); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		for _, rm := range m.ResourceMetrics {
			for _, sm := range rm.ScopeMetrics {
				for _, mt := range sm.Metrics {
					r.metrics[mt.Name] = true
				}
			}
		}
		out, _ := proto.Marshal(&collmetric.ExportMetricsServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(out)
	default:
		http.NotFound(w, req)
	}
}

// Setup exports by OTLP/HTTP to OTEL_EXPORTER_OTLP_ENDPOINT: a job retried once, then
// succeeded, reaches the receiver as one trace (the caller's span, the enqueue, two
// attempts), under OTEL_SERVICE_NAME, and the metrics arrive too.
func TestSetupExportsOTLPHTTP(t *testing.T) {
	recv, shutdown, obs := setupOTLPHTTP(t, "OTEL_SERVICE_NAME", "nightshift-test")
	ctx := context.Background()
	reg := nightshift.NewRegistry()
	nightshift.AddWorkerFunc(reg, func(ctx context.Context, job *nightshift.Job[flakyArgs]) (any, error) {
		if job.Attempt == 1 {
			return nil, errFirst
		}
		return "ok", nil
	}, &nightshift.WorkerOptions{Backoff: nightshift.ConstantBackoff(0), MaxAttempts: 3})
	app, err := nightshifttest.NewApp(reg, &nightshifttest.AppOptions{Handler: nightshift.HandlerOptions{Observer: obs}})
	if err != nil {
		t.Fatal(err)
	}
	reqCtx, root := otel.Tracer("test").Start(ctx, "POST /api/jobs")
	if _, err := app.Client.Enqueue(reqCtx, flakyArgs{}, nil); err != nil {
		t.Fatal(err)
	}
	root.End()
	if _, err := app.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	if err := shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	recv.mu.Lock()
	defer recv.mu.Unlock()
	tid := root.SpanContext().TraceID()
	var names []string
	for _, s := range recv.spans {
		if hex.EncodeToString(s.TraceId) == tid.String() {
			names = append(names, s.Name)
		}
	}
	queue := app.Storage().Layout.JobsQueue()
	want := map[string]int{"POST /api/jobs": 1, "send " + queue: 1, "process " + queue: 2}
	got := map[string]int{}
	for _, n := range names {
		got[n]++
	}
	for n, c := range want {
		if got[n] != c {
			t.Errorf("trace has %d spans %q, want %d (all: %v)", got[n], n, c, names)
		}
	}
	if recv.service != "nightshift-test" {
		t.Errorf("service.name = %q", recv.service)
	}
	for _, m := range []string{nightshiftotel.MetricStarted, nightshiftotel.MetricRetried, nightshiftotel.MetricDuration} {
		if !recv.metrics[m] {
			t.Errorf("metric %s not exported (got %v)", m, recv.metrics)
		}
	}
}

// setupOTLPHTTP starts an OTLP/HTTP receiver for the test, points nightshiftotel.Setup at it
// (http/protobuf, plus the settings in kv as name, value pairs) and returns the receiver,
// Setup's shutdown (which flushes) and an observer on the global providers; the global
// providers go back to no-ops after the test.
func setupOTLPHTTP(t *testing.T, kv ...string) (*otlpReceiver, func(context.Context) error, *nightshiftotel.Observer) {
	t.Helper()
	recv := &otlpReceiver{metrics: map[string]bool{}}
	srv := httptest.NewServer(recv)
	t.Cleanup(srv.Close)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", srv.URL)
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
	for i := 0; i+1 < len(kv); i += 2 {
		t.Setenv(kv[i], kv[i+1])
	}
	t.Cleanup(func() {
		otel.SetTracerProvider(tracenoop.NewTracerProvider())
		otel.SetMeterProvider(noop.NewMeterProvider())
	})
	shutdown, err := nightshiftotel.Setup(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	obs, err := nightshiftotel.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return recv, shutdown, obs
}
