package azure

import (
	"context"
	"net/http"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/tracing"
)

// Tracing of storage calls (docs/observability.md). azqueue and azblob start no span per
// operation, and azcore's HTTP span policy only traces a request whose context carries a
// tracer (runtime.StartSpan puts it there). So, when the account has a tracing.Provider,
// a per-call policy starts one span per SDK call, named after the driver operation, and
// the SDK's policy adds an "HTTP <method>" child span per try. Without a provider no
// policy is added and the operations leave their context alone.

// tracerName is the instrumentation scope of the driver's spans.
const tracerName = "github.com/nightshift-jobs/nightshift/internal/store/azure"

// opKey carries the driver operation's name to the tracing policy.
type opKey struct{}

// op names the driver operation of ctx's SDK calls, when the driver traces.
func (s *Store) op(ctx context.Context, name string) context.Context {
	if !s.traced {
		return ctx
	}
	return context.WithValue(ctx, opKey{}, name)
}

// tracePolicy starts the span of one SDK call of a service ("queue", "blob").
type tracePolicy struct {
	tracer  tracing.Tracer
	service string
}

// Do implements policy.Policy.
func (p tracePolicy) Do(req *policy.Request) (*http.Response, error) {
	ctx := req.Raw().Context()
	name, _ := ctx.Value(opKey{}).(string)
	if name == "" {
		name = req.Raw().Method
	}
	ctx, end := runtime.StartSpan(ctx, p.service+" "+name, p.tracer, &runtime.StartSpanOptions{
		Kind:       tracing.SpanKindInternal,
		Attributes: []tracing.Attribute{{Key: "az.namespace", Value: "Microsoft.Storage"}},
	})
	resp, err := req.WithContext(ctx).Next()
	end(err)
	return resp, err
}

// traceWith sets up the clients' options for tracing with p (when it is not the zero
// Provider) and reports whether it did.
func traceWith(p tracing.Provider, qopts, bopts *policy.ClientOptions) bool {
	t := p.NewTracer(tracerName, "")
	if !t.Enabled() {
		return false
	}
	qopts.TracingProvider, bopts.TracingProvider = p, p
	qopts.PerCallPolicies = append(qopts.PerCallPolicies, tracePolicy{tracer: t, service: "queue"})
	bopts.PerCallPolicies = append(bopts.PerCallPolicies, tracePolicy{tracer: t, service: "blob"})
	return true
}
