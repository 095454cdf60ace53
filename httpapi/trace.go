package httpapi

import (
	"context"

	"github.com/nightshift-jobs/nightshift"
)

// withRequestTrace continues the request's W3C trace (its traceparent and tracestate
// headers) into the jobs it enqueues: the client's Tracer parents its enqueue span to it,
// and without one the envelope carries the request's trace context as it came
// (docs/observability.md). A missing or malformed traceparent changes nothing.
func withRequestTrace(ctx context.Context, r *Request) context.Context {
	tp := r.Header("traceparent")
	if tp == "" {
		return ctx
	}
	return nightshift.ContextWithTrace(ctx, tp, r.Header("tracestate"))
}
