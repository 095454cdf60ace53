package nightshift_test

import (
	"context"
	"testing"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/envelope"
	"github.com/nightshift-jobs/nightshift/internal/store"
	"github.com/nightshift-jobs/nightshift/internal/testenv"
	"github.com/nightshift-jobs/nightshift/storage"
)

const (
	testTraceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	tracerParent    = "00-11112222333344445555666677778888-aaaabbbbccccdddd-01"
)

// fakeTracer records the enqueues it traces and injects a fixed trace context under the
// spans it starts.
type fakeTracer struct{ spans []nightshift.EnqueueSpan }

type fakeSpanKey struct{}

func (f *fakeTracer) StartEnqueue(ctx context.Context, e nightshift.EnqueueSpan) (context.Context, func(error)) {
	f.spans = append(f.spans, e)
	return context.WithValue(ctx, fakeSpanKey{}, true), func(error) {}
}

func (f *fakeTracer) Inject(ctx context.Context) *envelope.TraceContext {
	if ctx.Value(fakeSpanKey{}) == nil {
		return nil
	}
	return &envelope.TraceContext{Parent: tracerParent, State: "k=v"}
}

// queued returns the envelopes on a queue.
func queued(t *testing.T, s *storage.Clients, queue string) []*envelope.Envelope {
	t.Helper()
	msgs, err := s.Store().Peek(context.Background(), queue, store.MaxReceive)
	if err != nil {
		t.Fatal(err)
	}
	var out []*envelope.Envelope
	for _, m := range msgs {
		env, err := envelope.Decode([]byte(m.Text))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, env)
	}
	return out
}

// A received trace context (ContextWithTrace: the HTTP API's traceparent header) goes
// into the envelope as it is when the client has no Tracer; a malformed one is ignored;
// no trace, no field.
func TestEnqueueCarriesReceivedTrace(t *testing.T) {
	t.Parallel()
	s := testenv.Memory(t)
	c := nightshift.NewClient(s, nil)
	ctx := nightshift.ContextWithTrace(context.Background(), testTraceParent, "congo=t61rcWkgMzE")
	if _, err := c.Enqueue(ctx, memSumArgs{A: 1}, &nightshift.EnqueueOptions{JobID: "traced"}); err != nil {
		t.Fatal(err)
	}
	bad := nightshift.ContextWithTrace(context.Background(), "garbage", "")
	if _, err := c.Enqueue(bad, memSumArgs{A: 2}, &nightshift.EnqueueOptions{JobID: "untraced"}); err != nil {
		t.Fatal(err)
	}
	got := map[string]*envelope.TraceContext{}
	for _, env := range queued(t, s, s.Layout.JobsQueue()) {
		got[env.JobID] = env.Trace
	}
	if tc := got["traced"]; tc == nil || tc.Parent != testTraceParent || tc.State != "congo=t61rcWkgMzE" {
		t.Errorf("traced job's trace = %+v", tc)
	}
	if tc, ok := got["untraced"]; !ok || tc != nil {
		t.Errorf("job under a malformed traceparent: trace = %+v, present %v; want none", tc, ok)
	}
}

// With a Tracer, each enqueue and each batch is traced, and the envelopes (batch children
// included) carry the trace context of the Tracer's span.
func TestEnqueueAndBatchUseTracer(t *testing.T) {
	t.Parallel()
	s := testenv.Memory(t)
	tr := &fakeTracer{}
	c := nightshift.NewClient(s, &nightshift.ClientOptions{Tracer: tr})
	ctx := context.Background()
	if _, err := c.Enqueue(ctx, memSumArgs{A: 1}, &nightshift.EnqueueOptions{JobID: "one"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.StartBatch(ctx, nightshift.BatchParams{BatchID: "b1", Children: []nightshift.EnqueueParams{{Args: memSumArgs{A: 2}}, {Args: memSumArgs{A: 3}}}}); err != nil {
		t.Fatal(err)
	}
	if len(tr.spans) != 2 || tr.spans[0].JobID != "one" || tr.spans[0].Kind != (memSumArgs{}).Kind() ||
		tr.spans[0].Queue != s.Layout.JobsQueue() || !tr.spans[1].Batch || tr.spans[1].JobID != "b1" || tr.spans[1].Children != 2 {
		t.Fatalf("traced enqueues = %+v", tr.spans)
	}
	envs := queued(t, s, s.Layout.JobsQueue())
	if len(envs) != 3 {
		t.Fatalf("%d messages, want 3", len(envs))
	}
	for _, env := range envs {
		if env.Trace == nil || env.Trace.Parent != tracerParent {
			t.Errorf("job %s: trace %+v, want the tracer's", env.JobID, env.Trace)
		}
	}
}
