package envelope

import (
	"encoding/json"
	"testing"
	"time"
)

// FuzzDecode: no input panics the decoder; whatever decodes is within the limits, has no
// duplicate keys, and re-encodes and decodes again to the same kind and id. Seed corpus:
// testdata/fuzz/FuzzDecode.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"kind":"k"}`,
		`{"kind":"k","args":{"a":[1,{"b":null}]},"attempt":2}`,
		`eyJraW5kIjoiayJ9`,
		`{"kind":"k","errors":[{"attempt":1,"at":"2026-01-01T00:00:00Z","error":"x"}]}`,
		`not json`,
		``,
		`{"kind":"a","kind":"b"}`,
		`{"kind":"k","args":{"u":{"id":1,"id":2}}}`,
		`{"kind":"k","timeout_seconds":1e300,"max_attempts":1e300,"replay":99999}`,
		`{"kind":"k","snoozes":1001}`,
		`{"kind":"k","run_at":"9999-12-31T23:59:59Z","meta":{"a":"b"},"dedupe_key":"d"}`,
		`{"kind":"k","trace":{"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01","tracestate":"a=b"}}`,
		`{"kind":"k","attempt":100,"max_attempts":100,"timeout_seconds":604800}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		e, err := Decode(body)
		if err != nil {
			if e != nil {
				t.Fatal("envelope returned with error")
			}
			return
		}
		if e.TimeoutSeconds < 0 || e.TimeoutSeconds > MaxTimeoutSeconds || e.MaxAttempts > MaxAttemptsLimit ||
			e.Attempt > MaxAttemptsLimit || e.Replay > MaxReplays || e.Snoozes > MaxSnoozes || len(e.Errors) > MaxErrors || len(e.Meta) > MaxMetaEntries {
			t.Fatalf("accepted out-of-bounds envelope %+v", e)
		}
		if len(e.Args) > 0 {
			if err := CheckJSON(e.Args); err != nil {
				t.Fatalf("accepted args that fail the check: %v", err)
			}
		}
		e.Normalize(time.Unix(0, 0), "msg-1")
		b, err := e.Encode()
		if err != nil {
			return // may exceed the limit once defaults are added
		}
		back, err := Decode(b)
		if err != nil {
			t.Fatalf("re-decode of %q: %v", b, err)
		}
		if back.Kind != e.Kind || back.JobID != e.JobID {
			t.Fatalf("round trip changed kind/id: %+v vs %+v", back, e)
		}
	})
}

// FuzzCheckJSON: the scanner never panics, refuses all that encoding/json finds invalid,
// and accepts what encoding/json writes (which never repeats a key).
func FuzzCheckJSON(f *testing.F) {
	for _, s := range []string{
		`{"a":1,"a":2}`, `{"a":{"b":[{"c":1},{"c":2,"c":3}]}}`, `{"\u0061":1,"a":2}`, `[[[[[]]]]]`,
		`{"a":1} {"b":2}`, `"x"`, `1e400`, `{"a":[1,2,{"b":null}],"c":true}`, `{`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		err := CheckJSON(data)
		if !json.Valid(data) {
			if err == nil {
				t.Fatalf("accepted invalid JSON %q", data)
			}
			return
		}
		var v any
		if json.Unmarshal(data, &v) != nil {
			return
		}
		again, mErr := json.Marshal(v)
		if mErr != nil {
			return
		}
		if err == nil {
			if cerr := CheckJSON(again); cerr != nil {
				t.Fatalf("refused re-encoded %q: %v", again, cerr)
			}
		} else if fe, ok := err.(*FieldError); !ok || fe.Problem == "" {
			t.Fatalf("error of type %T: %v", err, err)
		}
	})
}
