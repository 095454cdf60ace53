package nightshiftotel_test

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/internal/testenv"
	"github.com/nightshift-jobs/nightshift/nightshiftotel"
	"github.com/nightshift-jobs/nightshift/record"
	"github.com/nightshift-jobs/nightshift/storage"
	"github.com/nightshift-jobs/nightshift/worker"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// End to end on Azurite through the local host's queue listener (worker mode, the same
// listener and executor as the local host): a job enqueued under a span, failed once,
// then succeeded, is one trace — the enqueue and both attempts.
func TestWorkerModeOnAzuriteIsOneTrace(t *testing.T) {
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	obs, err := nightshiftotel.New(&nightshiftotel.Options{TracerProvider: tp})
	if err != nil {
		t.Fatal(err)
	}
	getenv := testenv.Env(t)
	store, err := storage.FromEnv(getenv, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Ensure(context.Background()); err != nil {
		t.Fatal(err)
	}
	reg := nightshift.NewRegistry()
	nightshift.AddWorkerFunc(reg, func(ctx context.Context, job *nightshift.Job[flakyArgs]) (any, error) {
		if job.Attempt == 1 {
			return nil, errFirst
		}
		return "ok", nil
	}, &nightshift.WorkerOptions{Backoff: nightshift.ConstantBackoff(0), MaxAttempts: 3})
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	app, err := nightshift.NewApp(reg, nightshift.Config{Getenv: getenv, Store: store, Observer: obs, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- worker.Run(ctx, app, worker.Options{HealthAddr: "off", NoTimers: true, Queues: []string{"jobs"}, Concurrency: 2, Logger: log})
	}()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("worker: %v", err)
		}
	}()
	pctx, root := tp.Tracer("test").Start(context.Background(), "request")
	res, err := app.Client().Enqueue(pctx, flakyArgs{}, nil)
	root.End()
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	go func() {
		// A worker that stops early (a configuration error) ends the wait at once.
		select {
		case err := <-done:
			done <- err
			cancel()
		case <-wctx.Done():
		}
	}()
	st, err := app.Client().Wait(wctx, res.JobID, nil)
	if err != nil || st.State != record.StateSucceeded {
		t.Fatalf("job: %+v, %v", st, err)
	}
	tid := root.SpanContext().TraceID()
	kinds := map[trace.SpanKind]int{}
	var attempts []string
	for range 100 { // the last span ends just after the status write Wait saw
		kinds, attempts = map[trace.SpanKind]int{}, nil
		for _, s := range spans.Ended() {
			if s.SpanContext().TraceID() == tid {
				kinds[s.SpanKind()]++
				if s.SpanKind() == trace.SpanKindConsumer {
					attempts = append(attempts, attr(s, nightshiftotel.KeyAttempt)+":"+attr(s, nightshiftotel.KeyOutcome))
				}
			}
		}
		if kinds[trace.SpanKindConsumer] >= 2 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if kinds[trace.SpanKindProducer] != 1 || kinds[trace.SpanKindConsumer] != 2 {
		t.Fatalf("trace has %v spans by kind; attempts %v", kinds, attempts)
	}
	if !(attempts[0] == "1:retrying" && attempts[1] == "2:succeeded") && !(attempts[1] == "1:retrying" && attempts[0] == "2:succeeded") {
		t.Errorf("attempts = %v", attempts)
	}
}

// On Azurite, with the app's storage clients built by NewApp from the settings and the
// observer (a nightshift.StorageTracer): the storage calls of an attempt — its status
// reads and writes — are child spans of the attempt's span, each with the SDK's HTTP span
// beneath, the enqueue's queue call is a child of the send span, and no storage call
// outside a trace (the listener's receive loop) starts one.
func TestAttemptStorageCallsAreChildSpans(t *testing.T) {
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	obs, err := nightshiftotel.New(&nightshiftotel.Options{TracerProvider: tp})
	if err != nil {
		t.Fatal(err)
	}
	getenv := testenv.Env(t)
	reg := nightshift.NewRegistry()
	nightshift.AddWorkerFunc(reg, func(ctx context.Context, job *nightshift.Job[flakyArgs]) (any, error) {
		return "ok", nil
	}, nil)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	app, err := nightshift.NewApp(reg, nightshift.Config{Getenv: getenv, Observer: obs, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if err := app.Store().Ensure(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- worker.Run(ctx, app, worker.Options{HealthAddr: "off", NoTimers: true, Queues: []string{"jobs"}, Concurrency: 2, Logger: log})
	}()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("worker: %v", err)
		}
	}()
	pctx, root := tp.Tracer("test").Start(context.Background(), "request")
	res, err := app.Client().Enqueue(pctx, flakyArgs{}, nil)
	root.End()
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if st, err := app.Client().Wait(wctx, res.JobID, nil); err != nil || st.State != record.StateSucceeded {
		t.Fatalf("job: %+v, %v", st, err)
	}
	tid := root.SpanContext().TraceID()
	var attempt, send sdktrace.ReadOnlySpan
	for range 100 { // the attempt span ends just after the status write Wait saw
		for _, s := range spans.Ended() {
			switch {
			case s.SpanContext().TraceID() != tid:
			case s.SpanKind() == trace.SpanKindConsumer:
				attempt = s
			case s.SpanKind() == trace.SpanKindProducer:
				send = s
			}
		}
		if attempt != nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if attempt == nil || send == nil {
		t.Fatalf("no attempt or send span in the trace (attempt %v, send %v)", attempt != nil, send != nil)
	}
	children := map[trace.SpanID][]string{} // a span's children's names
	for _, s := range spans.Ended() {
		children[s.Parent().SpanID()] = append(children[s.Parent().SpanID()], s.Name())
		if n := s.Name(); (strings.HasPrefix(n, "queue ") || strings.HasPrefix(n, "blob ") || strings.HasPrefix(n, "HTTP ")) && !s.Parent().IsValid() {
			t.Errorf("storage span %q is a root span", n)
		}
	}
	under := children[attempt.SpanContext().SpanID()]
	if !slices.Contains(under, "blob Download") || !slices.Contains(under, "blob Put") {
		t.Errorf("attempt's children = %v, want its status read (blob Download) and write (blob Put)", under)
	}
	for _, s := range spans.Ended() {
		if s.Parent().SpanID() == attempt.SpanContext().SpanID() && strings.HasPrefix(s.Name(), "blob ") {
			if http := children[s.SpanContext().SpanID()]; len(http) == 0 || !strings.HasPrefix(http[0], "HTTP ") {
				t.Errorf("%s has children %v, want the SDK's HTTP span", s.Name(), http)
			}
			if s.SpanContext().TraceID() != tid {
				t.Errorf("%s is in another trace", s.Name())
			}
		}
	}
	if under := children[send.SpanContext().SpanID()]; !slices.Contains(under, "queue Enqueue") {
		t.Errorf("send's children = %v, want queue Enqueue", under)
	}
}
