package envelope

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
)

// MaxTraceStateBytes bounds trace.tracestate (the W3C limit a vendor may rely on: 32
// list members of at most 256 characters each are allowed, 512 bytes must be kept).
const MaxTraceStateBytes = 512

// traceParentRE is the W3C traceparent: version, trace id, parent (span) id and flags, in
// lower-case hex. The all-zero ids, which W3C calls invalid, pass here and are ignored by
// the tracing (a producer's bad trace never poisons its job).
var traceParentRE = regexp.MustCompile(`^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$`)

// ValidTraceParent reports why s is not a W3C traceparent ("" when it is).
func ValidTraceParent(s string) string {
	if s == "" {
		return "is required"
	}
	if !traceParentRE.MatchString(s) {
		return fmt.Sprintf("%q is not a W3C traceparent (00-<32 hex trace id>-<16 hex span id>-<2 hex flags>, lower case)", truncate(s, 64))
	}
	return ""
}

// ValidTraceState reports why s is not an acceptable tracestate ("" when it is): at most
// MaxTraceStateBytes of printable ASCII.
func ValidTraceState(s string) string {
	if len(s) > MaxTraceStateBytes {
		return fmt.Sprintf("is %d bytes; at most %d (envelope.MaxTraceStateBytes)", len(s), MaxTraceStateBytes)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return fmt.Sprintf("has byte %#x at %d; a tracestate is printable ASCII", s[i], i)
		}
	}
	return ""
}

// decodeObject decodes the callback or the trace object.
func decodeObject(e *Envelope, name string, v json.RawMessage) error {
	if name == "trace" {
		return decodeTrace(e, v)
	}
	if err := json.Unmarshal(v, &e.Callback); err != nil {
		return &FieldError{name, describeJSONError(err, v)}
	}
	return nil
}

// decodeTrace decodes the trace object strictly: unknown members are refused like unknown
// top-level fields.
func decodeTrace(e *Envelope, v json.RawMessage) error {
	dec := json.NewDecoder(bytes.NewReader(v))
	dec.DisallowUnknownFields()
	var tc TraceContext
	if err := dec.Decode(&tc); err != nil {
		return &FieldError{"trace", describeJSONError(err, v) + " (trace fields: traceparent, tracestate)"}
	}
	e.Trace = &tc
	return nil
}

// check validates a trace context; nil is fine (no trace).
func (tc *TraceContext) check() error {
	if tc == nil {
		return nil
	}
	if p := ValidTraceParent(tc.Parent); p != "" {
		return &FieldError{"trace.traceparent", p}
	}
	if p := ValidTraceState(tc.State); p != "" {
		return &FieldError{"trace.tracestate", p}
	}
	return nil
}
