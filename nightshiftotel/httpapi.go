package nightshiftotel

import (
	"context"
	"net/http"

	"github.com/nightshift-jobs/nightshift/envelope"
	"github.com/nightshift-jobs/nightshift/httpapi"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// HTTP semantic-convention attribute keys of the API's server spans.
const (
	KeyHTTPMethod     = attribute.Key("http.request.method")
	KeyHTTPRoute      = attribute.Key("http.route")
	KeyHTTPStatusCode = attribute.Key("http.response.status_code")
	KeyURLFull        = attribute.Key("url.full")
	KeyFunction       = attribute.Key("faas.name")
)

var _ httpapi.RequestTracer = (*Observer)(nil)

// StartRequest starts the server span of one request of the HTTP API ("POST
// /api/jobs"), a child of the request's traceparent when it has a valid one (else the
// root of a new trace); the jobs the request enqueues are its children. A 5xx status
// marks the span as failed.
func (o *Observer) StartRequest(ctx context.Context, r httpapi.RequestSpan) (context.Context, func(status int)) {
	if r.TraceParent != "" {
		ctx, _ = o.remote(ctx, &envelope.TraceContext{Parent: r.TraceParent, State: r.TraceState})
	}
	ctx, span := o.tracer.Start(ctx, r.Method+" "+r.Route, trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(
		KeyHTTPMethod.String(r.Method), KeyHTTPRoute.String(r.Route), KeyURLFull.String(r.URL), KeyFunction.String(r.Function)))
	return ctx, func(status int) {
		span.SetAttributes(KeyHTTPStatusCode.Int(status))
		if status >= http.StatusInternalServerError {
			span.SetStatus(codes.Error, http.StatusText(status))
		}
		span.End()
	}
}
