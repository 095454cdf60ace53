package nightshiftotel_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/internal/store"
	"github.com/nightshift-jobs/nightshift/internal/testenv"
	"github.com/nightshift-jobs/nightshift/nightshiftotel"
	"github.com/nightshift-jobs/nightshift/storage"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

type benchArgs struct{}

func (benchArgs) Kind() string { return "bench.noop" }

// BenchmarkInvocationTelemetry is BenchmarkInvocation's one RunJob invocation in process
// (a no-op job; records on the in-memory driver) with telemetry off (no Observer), with an
// Observer on OpenTelemetry's no-op providers, and with one on the SDK (every span
// sampled and batched to a discarding exporter, metrics aggregated by a manual reader):
// what enabling nightshiftotel costs per job (docs/benchmarks.md).
func BenchmarkInvocationTelemetry(b *testing.B) {
	noopObs, err := nightshiftotel.New(&nightshiftotel.Options{TracerProvider: tracenoop.NewTracerProvider(), MeterProvider: metricnoop.NewMeterProvider()})
	if err != nil {
		b.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter()))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	sdkObs, err := nightshiftotel.New(&nightshiftotel.Options{TracerProvider: tp, MeterProvider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))})
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name string
		obs  nightshift.Observer
	}{{"off", nil}, {"noop", noopObs}, {"sdk", sdkObs}} {
		b.Run(c.name, func(b *testing.B) { runInvocations(b, c.obs) })
	}
}

func runInvocations(b *testing.B, obs nightshift.Observer) {
	st, err := storage.NewMemory("", time.Now)
	if err != nil {
		b.Fatal(err)
	}
	reg := nightshift.NewRegistry()
	nightshift.AddWorkerFunc(reg, func(ctx context.Context, j *nightshift.Job[benchArgs]) (any, error) { return nil, nil }, nil)
	h := nightshift.NewHandler(reg, st, &nightshift.HandlerOptions{Logger: slog.New(slog.NewJSONHandler(io.Discard, nil)), Observer: obs})
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		m := store.Message{ID: "m", DequeueCount: 1, Text: fmt.Sprintf(`{"job_id":"b-%d-%d","kind":"bench.noop"}`, time.Now().UnixNano(), i)}
		req := httptest.NewRequest(http.MethodPost, "/"+nightshift.FunctionRunJob, strings.NewReader(string(testenv.QueueInvocation(nightshift.FunctionRunJob, m))))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != 200 || !strings.Contains(rec.Body.String(), "succeeded") {
			b.Fatalf("%d %s", rec.Code, rec.Body.String())
		}
	}
}
