package nightshiftotel_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/nightshift-jobs/nightshift/nightshiftotel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// LogHandler adds the ids of the context's span to a line logged with that context, once;
// a line without a span in its context is left as it is.
func TestLogHandlerAddsIDs(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(nightshiftotel.LogHandler(slog.NewJSONHandler(&buf, nil)))
	ctx, span := sdktrace.NewTracerProvider().Tracer("t").Start(context.Background(), "s")
	defer span.End()
	log.InfoContext(ctx, "with span")
	log.Info("without")
	log.With("trace_id", "given").InfoContext(ctx, "ids given")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("lines: %q", lines)
	}
	var first, second map[string]any
	_ = json.Unmarshal([]byte(lines[0]), &first)
	_ = json.Unmarshal([]byte(lines[1]), &second)
	if first["trace_id"] != span.SpanContext().TraceID().String() || first["span_id"] != span.SpanContext().SpanID().String() {
		t.Errorf("line with a span: %s", lines[0])
	}
	if _, ok := second["trace_id"]; ok {
		t.Errorf("line without a span: %s", lines[1])
	}
	if strings.Count(lines[2], "trace_id") != 1 {
		t.Errorf("ids added twice: %s", lines[2])
	}
}
