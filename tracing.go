package nightshift

import (
	"context"

	"github.com/nightshift-jobs/nightshift/envelope"
)

// Tracing seam of the producer side (docs/observability.md). The root package never
// imports OpenTelemetry: a Tracer (package nightshiftotel provides one) starts the
// producer spans and says what trace context goes into the envelope, so an application
// that does not enable telemetry does not link it.

// Tracer traces enqueues: ClientOptions.Tracer (Config.Observer sets it on the app's
// client when the observer is one too). Package nightshiftotel implements it.
type Tracer interface {
	// StartEnqueue starts the span of one enqueue (a job, or a batch with its children)
	// under ctx and returns the context carrying it and the func that ends it with the
	// enqueue's error.
	StartEnqueue(ctx context.Context, e EnqueueSpan) (context.Context, func(error))
	// Inject returns the trace context of ctx's span to put in an envelope, nil when ctx
	// has none.
	Inject(ctx context.Context) *envelope.TraceContext
}

// EnqueueSpan describes one enqueue to a Tracer.
type EnqueueSpan struct {
	// Kind is the job's kind; empty for a batch.
	Kind string
	// JobID is the job's id, or the batch's id for a batch.
	JobID string
	// Queue is the queue the message goes to.
	Queue string
	// Batch is true for a batch's enqueue (Children jobs).
	Batch    bool
	Children int
}

type traceKey struct{}

// ContextWithTrace returns ctx carrying a W3C trace context received from elsewhere (an
// HTTP request's traceparent and tracestate headers): a job enqueued under it carries it
// in its envelope when no Tracer has a span to put there. An invalid traceparent is
// ignored (ctx is returned as it is).
func ContextWithTrace(ctx context.Context, traceparent, tracestate string) context.Context {
	if envelope.ValidTraceParent(traceparent) != "" {
		return ctx
	}
	if envelope.ValidTraceState(tracestate) != "" {
		tracestate = ""
	}
	return context.WithValue(ctx, traceKey{}, envelope.TraceContext{Parent: traceparent, State: tracestate})
}

// TraceFromContext returns the trace context ContextWithTrace put in ctx.
func TraceFromContext(ctx context.Context) (envelope.TraceContext, bool) {
	tc, ok := ctx.Value(traceKey{}).(envelope.TraceContext)
	return tc, ok
}

// startEnqueue starts the enqueue's span (when the client has a Tracer).
func (c *Client) startEnqueue(ctx context.Context, e EnqueueSpan) (context.Context, func(error)) {
	if c.opts.Tracer == nil {
		return ctx, func(error) {}
	}
	return c.opts.Tracer.StartEnqueue(ctx, e)
}

// traceOf is the trace context an envelope enqueued under ctx carries: the Tracer's span,
// else one received with ContextWithTrace, else nil.
func (c *Client) traceOf(ctx context.Context) *envelope.TraceContext {
	if c.opts.Tracer != nil {
		if tc := c.opts.Tracer.Inject(ctx); tc != nil {
			return tc
		}
	}
	if tc, ok := TraceFromContext(ctx); ok {
		return &tc
	}
	return nil
}
