package nightshiftotel

import (
	"context"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/tracing"
	"github.com/Azure/azure-sdk-for-go/sdk/tracing/azotel"
	"github.com/nightshift-jobs/nightshift"
	"go.opentelemetry.io/otel/trace"
)

// StorageTracing returns the Azure SDK tracing provider (azotel's, over the observer's
// TracerProvider) that traces the storage calls made inside a trace: a span per queue or
// blob call ("blob Put", "queue Enqueue") under the span of its context (a job's attempt,
// an enqueue), with the SDK's "HTTP <method>" span per try beneath. A call outside any
// span (the listener's receive loop, the queue-depth sampling) starts no trace. NewApp
// uses it when the observer is Config.Observer (nightshift.StorageTracer); a store built
// by hand takes it as storage.Options.Tracing.
func (o *Observer) StorageTracing() tracing.Provider { return o.storage }

// childOnly is an azotel provider whose tracers start spans only under a valid span.
func childOnly(tp trace.TracerProvider) tracing.Provider {
	az := azotel.NewTracingProvider(tp, nil)
	return tracing.NewProvider(func(name, version string) tracing.Tracer {
		t := az.NewTracer(name, version)
		return tracing.NewTracer(func(ctx context.Context, spanName string, opts *tracing.SpanOptions) (context.Context, tracing.Span) {
			if !trace.SpanContextFromContext(ctx).IsValid() {
				return ctx, tracing.Span{}
			}
			return t.Start(ctx, spanName, opts)
		}, &tracing.TracerOptions{SpanFromContext: t.SpanFromContext})
	}, nil)
}

var _ nightshift.StorageTracer = (*Observer)(nil)
