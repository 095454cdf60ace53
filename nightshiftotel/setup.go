package nightshiftotel

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// Setup installs global tracer and meter providers that export by OTLP as the standard
// OpenTelemetry environment variables say, and the W3C trace-context propagator:
//
//   - OTEL_TRACES_EXPORTER, OTEL_METRICS_EXPORTER: "otlp" (the default) or "none";
//   - OTEL_EXPORTER_OTLP_PROTOCOL (or the _TRACES_/_METRICS_ ones): "http/protobuf" (the
//     default) or "grpc";
//   - OTEL_EXPORTER_OTLP_ENDPOINT, _HEADERS, _TIMEOUT, … and their per-signal forms, read
//     by the exporters; OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES name the service;
//     OTEL_TRACES_SAMPLER and OTEL_METRIC_EXPORT_INTERVAL as the SDK reads them.
//
// With both exporters "none" it installs nothing. The returned shutdown flushes and stops
// the exporters; call it before the process exits (nightshift's Serve returns on SIGTERM).
func Setup(ctx context.Context) (shutdown func(context.Context) error, err error) {
	res, err := resource.New(ctx, resource.WithFromEnv(), resource.WithTelemetrySDK(), resource.WithHost())
	if err != nil {
		return nil, fmt.Errorf("nightshiftotel: resource: %w", err)
	}
	var stops []func(context.Context) error
	shutdown = func(ctx context.Context) error {
		var errs []error
		for _, stop := range stops {
			errs = append(errs, stop(ctx))
		}
		return errors.Join(errs...)
	}
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	if exporterOn("OTEL_TRACES_EXPORTER") {
		exp, err := traceExporter(ctx)
		if err != nil {
			return nil, err
		}
		tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
		otel.SetTracerProvider(tp)
		stops = append(stops, tp.Shutdown)
	}
	if exporterOn("OTEL_METRICS_EXPORTER") {
		exp, err := metricExporter(ctx)
		if err != nil {
			_ = shutdown(ctx)
			return nil, err
		}
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewPeriodicReader(exp)), sdkmetric.WithResource(res))
		otel.SetMeterProvider(mp)
		stops = append(stops, mp.Shutdown)
	}
	return shutdown, nil
}

// exporterOn reads OTEL_TRACES_EXPORTER or OTEL_METRICS_EXPORTER: on unless "none".
func exporterOn(name string) bool {
	return strings.TrimSpace(os.Getenv(name)) != "none"
}

// protocol is the OTLP protocol of a signal ("TRACES", "METRICS"): its own setting, else
// OTEL_EXPORTER_OTLP_PROTOCOL, else http/protobuf.
func protocol(signal string) (string, error) {
	p := strings.TrimSpace(os.Getenv("OTEL_EXPORTER_OTLP_" + signal + "_PROTOCOL"))
	if p == "" {
		p = strings.TrimSpace(os.Getenv("OTEL_EXPORTER_OTLP_PROTOCOL"))
	}
	switch p {
	case "", "http/protobuf":
		return "http/protobuf", nil
	case "grpc":
		return "grpc", nil
	}
	return "", fmt.Errorf("nightshiftotel: OTEL_EXPORTER_OTLP_PROTOCOL %q: want http/protobuf or grpc", p)
}

func traceExporter(ctx context.Context) (sdktrace.SpanExporter, error) {
	p, err := protocol("TRACES")
	if err != nil {
		return nil, err
	}
	if p == "grpc" {
		return otlptracegrpc.New(ctx)
	}
	return otlptracehttp.New(ctx)
}

func metricExporter(ctx context.Context) (sdkmetric.Exporter, error) {
	p, err := protocol("METRICS")
	if err != nil {
		return nil, err
	}
	if p == "grpc" {
		return otlpmetricgrpc.New(ctx)
	}
	return otlpmetrichttp.New(ctx)
}
