package envelope

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// equivalenceSeeds are bodies for the fast-path equivalence fuzz tests: the FuzzDecode
// corpus plus keys spelt with escapes, invalid UTF-8 in keys, deep nesting and objects
// with many keys.
func equivalenceSeeds(f *testing.F) {
	for _, s := range []string{
		`{"kind":"k"}`, `{"kind":"a","kind":"b"}`, `{"kind":"a","\u006bind":"b"}`, `{"k\u0069nd":"k","job_id":"j"}`,
		"{\"\xff\":1,\"\xfe\":2}", `{"a":{"b":[{"c":1,"c":2}]}}`, `[{"x":1},{"x":1}]`, `"s"`, `1e300`, `null`, ``, `{`,
		`{"a":1}{"b":2}`, `{"a":1} x`, `[1,]`, `{"kind":"k","enqueued_at":"2026-01-02T15:04:05Z","run_at":"x"}`,
		`{"kind":"k","attempt":2,"max_attempts":"3","timeout_seconds":1.5,"replay":1e300}`,
		`{"kind":"k","job_id":5}`, `{"kind":"k","queue":"\ud800"}`, `{"kind":"k","enqueued_at":" 2026-01-02T15:04:05Z"}`,
		strings.Repeat(`{"a":`, MaxDepth) + "1" + strings.Repeat("}", MaxDepth),
		strings.Repeat(`{"a":`, MaxDepth+1) + "1" + strings.Repeat("}", MaxDepth+1),
		strings.Repeat("[", MaxDepth+1) + strings.Repeat("]", MaxDepth+1),
		`{"kind":"k","args":{"a0":0,"a1":1,"a2":2,"a3":3,"a4":4,"a5":5,"a6":6,"a7":7,"a8":8,"a9":9,"b0":0,"b1":1,"b2":2,"b3":3,"b4":4,"b5":5,"b6":6,"a3":3}}`,
		`{"kind":"k","args":{"a0":0,"a1":1,"a2":2,"a3":3,"a4":4,"a5":5,"a6":6,"a7":7,"a8":8,"a9":9,"b0":0,"b1":1,"b2":2,"b3":3,"b4":4,"b5":5,"b6":6,"b6 ":3}}`,
	} {
		f.Add([]byte(s))
	}
	files, _ := filepath.Glob("testdata/fuzz/FuzzDecode/*")
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		// Corpus files are "go test fuzz v1" followed by []byte("…").
		if _, v, ok := strings.Cut(string(b), "[]byte("); ok {
			if s, err := strconv.Unquote(strings.TrimSuffix(strings.TrimSpace(v), ")")); err == nil {
				f.Add([]byte(s))
			}
		}
	}
}

// FuzzCheckJSONFastScan: the fast scan and the token scan agree on every input, so
// CheckJSON accepts and refuses exactly what the token scan alone did.
func FuzzCheckJSONFastScan(f *testing.F) {
	equivalenceSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		fast, slow := fastScan(data, nil), checkJSONTokens(data)
		if fast != (slow == nil) {
			t.Fatalf("%q: fast scan %v, token scan %v", data, fast, slow)
		}
		if got := CheckJSON(data); !reflect.DeepEqual(got, slow) {
			t.Fatalf("%q: CheckJSON %v, token scan %v", data, got, slow)
		}
	})
}

// FuzzDecodeFastPath: Decode and the decoder it replaced (the token scan, then a map of
// the members) accept the same bodies and decode them to the same envelope; where both
// refuse because of the JSON text itself, they say the same.
func FuzzDecodeFastPath(f *testing.F) {
	equivalenceSeeds(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		got, err := Decode(body)
		var want *Envelope
		text, werr := messageText(body)
		if werr == nil {
			want, werr = decodeChecked(text)
		}
		if (err == nil) != (werr == nil) {
			t.Fatalf("%q: Decode %v, old decoder %v", body, err, werr)
		}
		if err == nil && !reflect.DeepEqual(got, want) {
			t.Fatalf("%q: Decode %+v, old decoder %+v", body, got, want)
		}
		var fe, wfe *FieldError
		if errors.As(err, &fe) && errors.As(werr, &wfe) && fe.Field == "" && wfe.Field == "" && *fe != *wfe {
			t.Fatalf("%q: Decode %v, old decoder %v", body, err, werr)
		}
	})
}
