package nightshiftotel

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/tracing"
	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/envelope"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// ScopeName is the instrumentation scope of the tracer and the meter.
const ScopeName = "github.com/nightshift-jobs/nightshift/nightshiftotel"

// MessagingSystem is the messaging.system value of nightshift's spans and metrics: Azure
// Storage queues, which the semantic conventions have no registered value for.
const MessagingSystem = "azure.storage.queue"

// Attribute keys: the messaging semantic conventions' where they apply, nightshift.* for
// the rest.
const (
	KeyMessagingSystem    = attribute.Key("messaging.system")
	KeyDestination        = attribute.Key("messaging.destination.name")
	KeyMessageID          = attribute.Key("messaging.message.id")
	KeyOperationType      = attribute.Key("messaging.operation.type")
	KeyOperationName      = attribute.Key("messaging.operation.name")
	KeyBatchMessageCount  = attribute.Key("messaging.batch.message_count")
	KeyErrorType          = attribute.Key("error.type")
	KeyJobID              = attribute.Key("nightshift.job.id")
	KeyKind               = attribute.Key("nightshift.job.kind")
	KeyAttempt            = attribute.Key("nightshift.job.attempt")
	KeyReplay             = attribute.Key("nightshift.job.replay")
	KeyDequeueCount       = attribute.Key("nightshift.message.dequeue_count")
	KeyOutcome            = attribute.Key("nightshift.job.outcome")
	KeyDeadReason         = attribute.Key("nightshift.dead.reason")
	KeyDeadCause          = attribute.Key("nightshift.dead.cause")
	KeyDeadID             = attribute.Key("nightshift.dead.id")
	KeyInvocationID       = attribute.Key("nightshift.invocation.id")
	KeyPoison             = attribute.Key("nightshift.queue.poison")
	KeyCallbackOutcome    = attribute.Key("nightshift.callback.outcome")
	KeyState              = attribute.Key("nightshift.job.state")
	KeyBatch              = attribute.Key("nightshift.batch")
	KeyDeadLetterRecorded = attribute.Key("nightshift.dead.recorded")
	// KeyQueueLatency is the enqueue→start latency in seconds, on a job's first attempt.
	KeyQueueLatency = attribute.Key("nightshift.job.queue_latency")
)

// Options configure an Observer. The zero value uses the global providers (Setup sets
// them).
type Options struct {
	// TracerProvider gives the tracer; default otel.GetTracerProvider().
	TracerProvider trace.TracerProvider
	// MeterProvider gives the meter; default otel.GetMeterProvider().
	MeterProvider metric.MeterProvider
	// DepthInterval is the least time between two samples of the queue depths
	// (WatchQueues); default 30 s. A collection in between reports the last sample.
	DepthInterval time.Duration
}

// Observer is a nightshift.Observer and nightshift.Tracer reporting to OpenTelemetry. Give
// it to nightshift.Config.Observer; it is safe for concurrent use.
type Observer struct {
	tracer  trace.Tracer
	prop    propagation.TraceContext
	m       *instruments
	depths  depthSampler
	storage tracing.Provider
}

var (
	_ nightshift.Observer = (*Observer)(nil)
	_ nightshift.Tracer   = (*Observer)(nil)
)

// New returns an Observer on the options' (or the global) providers. opts may be nil.
func New(opts *Options) (*Observer, error) {
	o := Options{}
	if opts != nil {
		o = *opts
	}
	if o.TracerProvider == nil {
		o.TracerProvider = otel.GetTracerProvider()
	}
	if o.MeterProvider == nil {
		o.MeterProvider = otel.GetMeterProvider()
	}
	if o.DepthInterval <= 0 {
		o.DepthInterval = 30 * time.Second
	}
	obs := &Observer{tracer: o.TracerProvider.Tracer(ScopeName), storage: childOnly(o.TracerProvider)}
	obs.depths.interval = o.DepthInterval
	m, err := newInstruments(o.MeterProvider.Meter(ScopeName), &obs.depths)
	if err != nil {
		return nil, err
	}
	obs.m = m
	return obs, nil
}

// WatchQueues makes the queue-depth gauge sample c.QueueDepths (the client's queues and
// their poison queues), at most once per Options.DepthInterval.
func (o *Observer) WatchQueues(c *nightshift.Client) { o.depths.client.Store(c) }

// carrier is a W3C trace context as a propagation.TextMapCarrier.
func carrier(tc *envelope.TraceContext) propagation.MapCarrier {
	m := propagation.MapCarrier{"traceparent": tc.Parent}
	if tc.State != "" {
		m["tracestate"] = tc.State
	}
	return m
}

// remote returns ctx with the remote span context of tc as its parent, when tc is valid.
func (o *Observer) remote(ctx context.Context, tc *envelope.TraceContext) (context.Context, bool) {
	if tc == nil {
		return ctx, false
	}
	sc := trace.SpanContextFromContext(o.prop.Extract(context.Background(), carrier(tc)))
	if !sc.IsValid() {
		return ctx, false
	}
	return trace.ContextWithRemoteSpanContext(ctx, sc), true
}

// StartEnqueue starts the producer span of an enqueue ("send <queue>"), as a child of
// ctx's span, or of the trace context ctx received (nightshift.ContextWithTrace: an HTTP
// request's traceparent). With neither, nothing is traced: an enqueue outside any trace
// starts none.
func (o *Observer) StartEnqueue(ctx context.Context, e nightshift.EnqueueSpan) (context.Context, func(error)) {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		tc, ok := nightshift.TraceFromContext(ctx)
		if !ok {
			return ctx, func(error) {}
		}
		if ctx, ok = o.remote(ctx, &tc); !ok {
			return ctx, func(error) {}
		}
	}
	attrs := []attribute.KeyValue{KeyMessagingSystem.String(MessagingSystem), KeyDestination.String(e.Queue),
		KeyOperationType.String("send"), KeyOperationName.String("send"), KeyJobID.String(e.JobID)}
	if e.Batch {
		attrs = append(attrs, KeyBatch.Bool(true), KeyBatchMessageCount.Int(e.Children))
	} else {
		attrs = append(attrs, KeyKind.String(e.Kind))
	}
	ctx, span := o.tracer.Start(ctx, "send "+e.Queue, trace.WithSpanKind(trace.SpanKindProducer), trace.WithAttributes(attrs...))
	return ctx, func(err error) {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}
}

// Inject returns the W3C trace context of ctx's span (nil when ctx has no valid span).
func (o *Observer) Inject(ctx context.Context) *envelope.TraceContext {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return nil
	}
	m := propagation.MapCarrier{}
	o.prop.Inject(ctx, m)
	if envelope.ValidTraceParent(m["traceparent"]) != "" {
		return nil
	}
	tc := &envelope.TraceContext{Parent: m["traceparent"], State: m["tracestate"]}
	if envelope.ValidTraceState(tc.State) != "" {
		tc.State = ""
	}
	return tc
}

// StartAttempt starts the consumer span of a delivery ("process <queue>"): a child of the
// enqueue's trace context from the envelope (so every attempt, retry and the dead letter
// of a job share the producer's trace), linked to ctx's span when there is one too.
func (o *Observer) StartAttempt(ctx context.Context, a nightshift.AttemptInfo) (context.Context, nightshift.AttemptObserver) {
	var opts []trace.SpanStartOption
	parent := ctx
	if cur := trace.SpanContextFromContext(ctx); cur.IsValid() && a.Trace != nil {
		opts = append(opts, trace.WithLinks(trace.Link{SpanContext: cur}))
	}
	if p, ok := o.remote(ctx, a.Trace); ok {
		parent = p
	}
	attrs := []attribute.KeyValue{
		KeyMessagingSystem.String(MessagingSystem), KeyDestination.String(a.Queue), KeyOperationType.String("process"),
		KeyOperationName.String("process"), KeyMessageID.String(a.MessageID), KeyJobID.String(a.JobID),
		KeyKind.String(a.Kind), KeyAttempt.Int(a.Attempt), KeyReplay.Int(a.Replay), KeyDequeueCount.Int(a.DequeueCount),
		KeyInvocationID.String(a.InvocationID),
	}
	opts = append(opts, trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(attrs...))
	ctx, span := o.tracer.Start(parent, "process "+a.Queue, opts...)
	return ctx, &attempt{o: o, span: span, info: a, set: attribute.NewSet(KeyKind.String(a.Kind), KeyDestination.String(a.Queue))}
}

// attempt observes one delivery.
type attempt struct {
	o       *Observer
	span    trace.Span
	info    nightshift.AttemptInfo
	set     attribute.Set // kind and queue
	running bool
	started time.Time
}

// LogAttrs are the trace and span ids of the delivery's span.
func (a *attempt) LogAttrs() []slog.Attr {
	sc := a.span.SpanContext()
	if !sc.IsValid() {
		return nil
	}
	return []slog.Attr{slog.String(LogKeyTraceID, sc.TraceID().String()), slog.String(LogKeySpanID, sc.SpanID().String())}
}

// Running counts the attempt as started and in flight, and records the enqueue→start
// latency of a job's first delivery.
func (a *attempt) Running() {
	a.running, a.started = true, time.Now()
	ctx := context.Background()
	a.o.m.started.Add(ctx, 1, metric.WithAttributeSet(a.set))
	a.o.m.inFlight.Add(ctx, 1, metric.WithAttributeSet(a.set))
	if a.info.Attempt == 1 && a.info.DequeueCount <= 1 && !a.info.EnqueuedAt.IsZero() {
		due := a.info.EnqueuedAt
		if a.info.RunAt.After(due) {
			due = a.info.RunAt
		}
		wait := max(a.started.Sub(due), 0).Seconds()
		a.o.m.latency.Record(ctx, wait, metric.WithAttributeSet(a.set))
		a.span.SetAttributes(KeyQueueLatency.Float64(wait))
	}
	a.span.AddEvent("worker started")
}

// End records the outcome on the span and in the metrics, and ends the span.
func (a *attempt) End(e nightshift.AttemptEnd) {
	ctx := context.Background()
	a.span.SetAttributes(KeyOutcome.String(e.Outcome))
	if e.ErrorClass != "" {
		a.span.SetAttributes(KeyErrorType.String(e.ErrorClass))
	}
	if e.DeadReason != "" {
		a.span.SetAttributes(KeyDeadReason.String(string(e.DeadReason)))
	}
	if e.Error != "" {
		a.span.RecordError(errors.New(e.Error), trace.WithAttributes(KeyErrorType.String(e.ErrorClass)))
		a.span.SetStatus(codes.Error, e.Error)
	}
	if a.running {
		a.o.m.inFlight.Add(ctx, -1, metric.WithAttributeSet(a.set))
		attrs := []attribute.KeyValue{KeyMessagingSystem.String(MessagingSystem), KeyDestination.String(a.info.Queue),
			KeyOperationName.String("process"), KeyKind.String(a.info.Kind), KeyOutcome.String(e.Outcome)}
		if e.ErrorClass != "" {
			attrs = append(attrs, KeyErrorType.String(e.ErrorClass))
		}
		a.o.m.duration.Record(ctx, time.Since(a.started).Seconds(), metric.WithAttributes(attrs...))
	}
	switch e.Outcome {
	case "succeeded":
		a.o.m.succeeded.Add(ctx, 1, metric.WithAttributeSet(a.set))
	case "retrying":
		a.o.m.retried.Add(ctx, 1, metric.WithAttributeSet(a.set))
	}
	a.span.End()
}

// Callback counts the job-end callback hook's outcome and notes it on ctx's span (the
// callback's, StartCallback).
func (o *Observer) Callback(ctx context.Context, c nightshift.CallbackInfo) {
	outcome := "enqueued"
	if c.Err != nil {
		outcome = "error"
	}
	attrs := []attribute.KeyValue{KeyKind.String(c.Kind), KeyState.String(string(c.State)), KeyCallbackOutcome.String(outcome)}
	o.m.callbacks.Add(ctx, 1, metric.WithAttributes(attrs...))
	span := trace.SpanFromContext(ctx)
	span.SetAttributes(KeyCallbackOutcome.String(outcome))
	span.AddEvent("callback", trace.WithAttributes(attrs...))
	if c.Err != nil {
		span.RecordError(c.Err)
	}
}

// DeadLetter gives the dead letter its span ("dead_letter <queue>"), in the job's trace,
// and counts a newly recorded one as a dead job.
func (o *Observer) DeadLetter(ctx context.Context, d nightshift.DeadLetterInfo) {
	parent := ctx
	if p, ok := o.remote(ctx, d.Trace); ok {
		parent = p
	}
	attrs := []attribute.KeyValue{
		KeyMessagingSystem.String(MessagingSystem), KeyDestination.String(d.Queue + "-poison"), KeyOperationType.String("process"),
		KeyOperationName.String("dead_letter"), KeyDeadID.String(d.DeadID), KeyJobID.String(d.JobID), KeyKind.String(d.Kind),
		KeyDeadReason.String(string(d.Reason)), KeyDeadCause.String(string(d.Cause)), KeyDeadLetterRecorded.Bool(d.Recorded),
	}
	_, span := o.tracer.Start(parent, "dead_letter "+d.Queue, trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithTimestamp(d.Started), trace.WithAttributes(attrs...))
	span.SetStatus(codes.Error, "dead: "+string(d.Reason))
	span.End()
	if d.Recorded {
		o.m.dead.Add(ctx, 1, metric.WithAttributes(KeyKind.String(d.Kind), KeyDestination.String(d.Queue),
			KeyDeadReason.String(string(d.Reason)), KeyDeadCause.String(string(d.Cause))))
	}
}

// depthSampler samples the queue depths for the gauge.
type depthSampler struct {
	client   atomic.Pointer[nightshift.Client]
	interval time.Duration
	last     atomic.Pointer[depthSample]
}

type depthSample struct {
	at     time.Time
	depths []nightshift.QueueDepth
}

// sample returns the depths, sampling again when the last sample is older than the
// interval; nil when no client is watched or the first sample failed.
func (s *depthSampler) sample(ctx context.Context) []nightshift.QueueDepth {
	c := s.client.Load()
	if c == nil {
		return nil
	}
	last := s.last.Load()
	if last != nil && time.Since(last.at) < s.interval {
		return last.depths
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	d, err := c.QueueDepths(ctx)
	if err != nil {
		if last != nil {
			return last.depths
		}
		return nil
	}
	s.last.Store(&depthSample{at: time.Now(), depths: d})
	return d
}

var _ nightshift.CallbackSpanner = (*Observer)(nil)

// StartCallback starts the span of one run of the job-end callback hook ("callback
// <kind>"), a child of ctx's span (the attempt's, or the dead letter's), else of the job's
// enqueue trace; with neither it starts none. The span ends with the hook's error.
func (o *Observer) StartCallback(ctx context.Context, c nightshift.CallbackInfo) (context.Context, func(error)) {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		var ok bool
		if ctx, ok = o.remote(ctx, c.Trace); !ok {
			return ctx, func(error) {}
		}
	}
	ctx, span := o.tracer.Start(ctx, "callback "+c.Kind, trace.WithSpanKind(trace.SpanKindInternal), trace.WithAttributes(
		KeyJobID.String(c.JobID), KeyKind.String(c.Kind), KeyState.String(string(c.State))))
	return ctx, func(err error) {
		if err != nil {
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}
}
