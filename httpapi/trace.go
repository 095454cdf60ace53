package httpapi

import (
	"context"
	"net/http"
	"strconv"
	"strings"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/hostproto"
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

// RequestTracer traces the API's requests (Options.Tracer): a server span per request,
// continuing the trace of its traceparent/tracestate headers, as the parent of the
// enqueue's span. Package nightshiftotel's Observer is one; Feature takes the app's
// observer when it is one. The requests arrive JSON-wrapped in invocations, not as
// net/http requests, so the span is started here rather than by an HTTP middleware.
type RequestTracer interface {
	// StartRequest starts the span of one request and returns the context carrying it
	// and the func that ends it with the response's status code.
	StartRequest(ctx context.Context, r RequestSpan) (context.Context, func(status int))
}

// RequestSpan describes one request to a RequestTracer.
type RequestSpan struct {
	// Function is the function's name (FunctionEnqueue, …).
	Function string
	// Method is the request's method ("POST"); Route the function's route template
	// under the host's route prefix ("/api/jobs/{id}"); URL the request's URL.
	Method, Route, URL string
	// TraceParent and TraceState are the request's W3C trace-context headers.
	TraceParent, TraceState string
}

// traced wraps a function of the API in its tracer's request span (with no tracer, serve
// as it is).
func (a *API) traced(name, route string, serve nightshift.FunctionFunc) nightshift.FunctionFunc {
	t := a.opts.Tracer
	if t == nil {
		return serve
	}
	return func(ctx context.Context, inv *nightshift.Invocation) (*hostproto.InvokeResponse, error) {
		rs := RequestSpan{Function: name, Route: "/api/" + route}
		if r, err := decodeRequest(inv); err == nil {
			rs.Method, rs.URL = strings.ToUpper(r.Method), r.URL
			rs.TraceParent, rs.TraceState = r.Header("traceparent"), r.Header("tracestate")
		}
		ctx, end := t.StartRequest(ctx, rs)
		resp, err := serve(ctx, inv)
		end(statusOf(resp, err))
		return resp, err
	}
}

// statusOf is the HTTP status of an invocation's response (500 when it failed).
func statusOf(resp *hostproto.InvokeResponse, err error) int {
	if err != nil || resp == nil {
		return http.StatusInternalServerError
	}
	if r, ok := resp.Outputs[ResponseBinding].(Response); ok {
		if n, err := strconv.Atoi(r.StatusCode); err == nil {
			return n
		}
	}
	return http.StatusInternalServerError
}
