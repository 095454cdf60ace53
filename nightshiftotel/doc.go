// Package nightshiftotel is nightshift's OpenTelemetry instrumentation: a
// nightshift.Observer and nightshift.Tracer that give every enqueue a producer span,
// every delivery of a job a consumer span in the producer's trace (retries and the dead
// letter included), the metrics an operator alerts on (jobs started, succeeded, retried
// and dead by kind and queue, run duration, enqueue→start latency, in-flight jobs, queue
// and poison depth, callback outcomes), trace and span ids on the job's log lines, and
// exporters configured by the standard OTEL_* environment variables (Setup).
//
// It is its own Go module, so an application that does not import it neither builds nor
// links OpenTelemetry:
//
//	shutdown, err := nightshiftotel.Setup(ctx, nil) // OTLP by OTEL_* settings
//	obs, err := nightshiftotel.New(nil)
//	app, err := nightshift.NewApp(reg, nightshift.Config{Observer: obs})
//
// docs/observability.md has the spans, the metrics and the queries.
package nightshiftotel
