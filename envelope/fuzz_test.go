package envelope

import (
	"testing"
	"time"
)

// FuzzDecode: no input panics the decoder; whatever decodes re-encodes and decodes again
// to the same kind and id. Seed corpus: testdata/fuzz/FuzzDecode.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"kind":"k"}`,
		`{"kind":"k","args":{"a":[1,{"b":null}]},"attempt":2}`,
		`eyJraW5kIjoiayJ9`,
		`{"kind":"k","errors":[{"attempt":1,"at":"2026-01-01T00:00:00Z","error":"x"}]}`,
		`not json`,
		``,
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
