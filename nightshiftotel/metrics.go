package nightshiftotel

import (
	"context"

	"go.opentelemetry.io/otel/metric"
)

// Metric names (docs/observability.md lists them with their attributes).
const (
	MetricStarted   = "nightshift.jobs.started"
	MetricSucceeded = "nightshift.jobs.succeeded"
	MetricRetried   = "nightshift.jobs.retried"
	MetricDead      = "nightshift.jobs.dead"
	MetricInFlight  = "nightshift.jobs.in_flight"
	MetricDuration  = "messaging.process.duration"
	MetricLatency   = "nightshift.jobs.queue_latency"
	MetricDepth     = "nightshift.queue.depth"
	MetricCallbacks = "nightshift.callbacks"
)

// instruments are the Observer's metrics.
type instruments struct {
	started, succeeded, retried, dead, callbacks metric.Int64Counter
	inFlight                                     metric.Int64UpDownCounter
	duration, latency                            metric.Float64Histogram
}

// durationBuckets are seconds from 5 ms to 1 h: jobs run from milliseconds to their
// timeout.
var durationBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600}

func newInstruments(m metric.Meter, depths *depthSampler) (*instruments, error) {
	var in instruments
	var err error
	counter := func(name, desc string) metric.Int64Counter {
		if err != nil {
			return nil
		}
		var c metric.Int64Counter
		c, err = m.Int64Counter(name, metric.WithDescription(desc), metric.WithUnit("{job}"))
		return c
	}
	in.started = counter(MetricStarted, "Attempts whose worker started, by kind and queue.")
	in.succeeded = counter(MetricSucceeded, "Jobs that succeeded, by kind and queue.")
	in.retried = counter(MetricRetried, "Failed attempts that were retried, by kind and queue.")
	in.dead = counter(MetricDead, "Dead letters recorded, by kind, queue, reason and cause.")
	if err != nil {
		return nil, err
	}
	if in.callbacks, err = m.Int64Counter(MetricCallbacks, metric.WithDescription("Job-end callback hook calls, by kind, state and outcome."), metric.WithUnit("{call}")); err != nil {
		return nil, err
	}
	if in.inFlight, err = m.Int64UpDownCounter(MetricInFlight, metric.WithDescription("Attempts running now, by kind and queue."), metric.WithUnit("{job}")); err != nil {
		return nil, err
	}
	if in.duration, err = m.Float64Histogram(MetricDuration, metric.WithDescription("How long an attempt's worker ran, by kind, queue, outcome and error type."),
		metric.WithUnit("s"), metric.WithExplicitBucketBoundaries(durationBuckets...)); err != nil {
		return nil, err
	}
	if in.latency, err = m.Float64Histogram(MetricLatency, metric.WithDescription("Time from a job's enqueue (or its run_at) to the start of its first attempt, by kind and queue."),
		metric.WithUnit("s"), metric.WithExplicitBucketBoundaries(durationBuckets...)); err != nil {
		return nil, err
	}
	_, err = m.Int64ObservableGauge(MetricDepth, metric.WithDescription("Approximate messages on each job queue and its poison queue, sampled (Observer.WatchQueues)."),
		metric.WithUnit("{message}"), metric.WithInt64Callback(func(ctx context.Context, o metric.Int64Observer) error {
			for _, d := range depths.sample(ctx) {
				if d.QueueMissing {
					continue
				}
				o.Observe(int64(d.Messages), metric.WithAttributes(KeyDestination.String(d.Queue), KeyPoison.Bool(false)))
				o.Observe(int64(d.PoisonMsgs), metric.WithAttributes(KeyDestination.String(d.PoisonQueue), KeyPoison.Bool(true)))
			}
			return nil
		}))
	if err != nil {
		return nil, err
	}
	return &in, nil
}
