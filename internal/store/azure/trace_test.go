package azure_test

import (
	"context"
	"slices"
	"sync"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/tracing"

	"github.com/nightshift-jobs/nightshift/internal/store"
	"github.com/nightshift-jobs/nightshift/internal/testenv"
	"github.com/nightshift-jobs/nightshift/storage"
)

// spanLog is an Azure SDK tracing provider that records the names of the spans started
// and which started span each new one is a child of.
type spanLog struct {
	mu    sync.Mutex
	spans []string // "name<-parent" ("" parent: none)
}

type spanKey struct{}

func (l *spanLog) provider() tracing.Provider {
	return tracing.NewProvider(func(string, string) tracing.Tracer {
		return tracing.NewTracer(func(ctx context.Context, name string, _ *tracing.SpanOptions) (context.Context, tracing.Span) {
			parent, _ := ctx.Value(spanKey{}).(string)
			l.mu.Lock()
			l.spans = append(l.spans, name+"<-"+parent)
			l.mu.Unlock()
			return context.WithValue(ctx, spanKey{}, name), tracing.Span{}
		}, nil)
	}, nil)
}

// With storage.Options.Tracing each driver call is a span named after the operation, and
// the SDK's HTTP span policy adds its span per try as that span's child.
func TestTracingSpansPerCall(t *testing.T) {
	var log spanLog
	c, err := storage.FromEnv(testenv.Env(t), &storage.Options{Tracing: log.provider()})
	if err != nil {
		t.Fatal(err)
	}
	s := c.Store()
	ctx := context.Background()
	cont := testenv.Prefix(t) + "-trace"
	if err := s.CreateContainer(ctx, cont); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.DeleteContainer(context.Background(), cont) })
	if _, err := s.Put(ctx, cont, "b", []byte("x"), store.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	q := testenv.Prefix(t) + "-trace"
	if err := s.CreateQueue(ctx, q); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.DeleteQueue(context.Background(), q) })
	if _, err := s.Enqueue(ctx, q, "m", 0, 0); err != nil {
		t.Fatal(err)
	}
	log.mu.Lock()
	got := slices.Clone(log.spans)
	log.mu.Unlock()
	for _, want := range []string{"blob CreateContainer<-", "HTTP PUT<-blob CreateContainer", "blob Put<-", "HTTP PUT<-blob Put",
		"queue CreateQueue<-", "queue Enqueue<-", "HTTP POST<-queue Enqueue"} {
		if !slices.Contains(got, want) {
			t.Errorf("spans %v: no %q", got, want)
		}
	}

}
