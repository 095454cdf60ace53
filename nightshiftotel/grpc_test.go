package nightshiftotel_test

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/nightshift-jobs/nightshift/nightshiftotel"
	"go.opentelemetry.io/otel"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
	colltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
)

// grpcReceiver is an OTLP/gRPC trace receiver in the test process.
type grpcReceiver struct {
	colltrace.UnimplementedTraceServiceServer
	mu    sync.Mutex
	names []string
}

func (r *grpcReceiver) Export(ctx context.Context, req *colltrace.ExportTraceServiceRequest) (*colltrace.ExportTraceServiceResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rs := range req.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				r.names = append(r.names, s.Name)
			}
		}
	}
	return &colltrace.ExportTraceServiceResponse{}, nil
}

// OTEL_EXPORTER_OTLP_PROTOCOL=grpc exports the spans by OTLP/gRPC; OTEL_METRICS_EXPORTER
// none turns the metrics off.
func TestSetupExportsOTLPGRPC(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	recv := &grpcReceiver{}
	colltrace.RegisterTraceServiceServer(srv, recv)
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://"+lis.Addr().String())
	t.Setenv("OTEL_METRICS_EXPORTER", "none")
	t.Cleanup(func() { otel.SetTracerProvider(tracenoop.NewTracerProvider()) })
	ctx := context.Background()
	shutdown, err := nightshiftotel.Setup(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, span := otel.Tracer("test").Start(ctx, "over grpc")
	span.End()
	if err := shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	recv.mu.Lock()
	defer recv.mu.Unlock()
	if len(recv.names) != 1 || recv.names[0] != "over grpc" {
		t.Fatalf("received spans %v", recv.names)
	}
}

// An unknown protocol is a configuration error naming the setting.
func TestSetupRefusesUnknownProtocol(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "carrier-pigeon")
	if _, err := nightshiftotel.Setup(context.Background()); err == nil || !strings.Contains(err.Error(), "OTEL_EXPORTER_OTLP_PROTOCOL") {
		t.Fatalf("Setup with an unknown protocol: %v", err)
	}
}
