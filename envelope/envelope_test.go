package envelope

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestDecodeRawAndBase64(t *testing.T) {
	raw := `{"kind":"csv_stats","args":{"blob":"in/a.csv"},"job_id":"j-1","attempt":2,"enqueued_at":"2026-01-02T03:04:05Z"}`
	for name, body := range map[string]string{
		"raw":         raw,
		"raw padded":  "\n  " + raw + "  \n",
		"base64":      base64.StdEncoding.EncodeToString([]byte(raw)),
		"base64 url":  base64.URLEncoding.EncodeToString([]byte(raw)),
		"base64 nopd": base64.RawStdEncoding.EncodeToString([]byte(raw)),
	} {
		t.Run(name, func(t *testing.T) {
			e, err := Decode([]byte(body))
			if err != nil {
				t.Fatal(err)
			}
			if e.Kind != "csv_stats" || e.JobID != "j-1" || e.Attempt != 2 || string(e.Args) != `{"blob":"in/a.csv"}` {
				t.Fatalf("decoded %+v", e)
			}
			if !e.EnqueuedAt.Equal(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)) {
				t.Fatalf("enqueued_at %v", e.EnqueuedAt)
			}
		})
	}
}

func TestDecodeErrorsNameTheField(t *testing.T) {
	cases := []struct {
		body, field, problem string
	}{
		{``, "", "message is empty"},
		{`hello world`, "", "neither a JSON object nor base64"},
		{base64.StdEncoding.EncodeToString([]byte("plain text")), "", "decoded text is not a JSON object"},
		{`{"kind":`, "", "not valid JSON"},
		{`[1,2]`, "", "neither a JSON object"},
		{`{}`, "kind", "is required"},
		{`{"kind":""}`, "kind", "is required"},
		{`{"kind":"has space"}`, "kind", "must be 1–128 characters"},
		{`{"kind":7}`, "kind", "expected a string, got number"},
		{`{"kind":"k","attempt":"2"}`, "attempt", "expected a number, got string"},
		{`{"kind":"k","attempt":-1}`, "attempt", "must be 1 or more"},
		{`{"kind":"k","max_attempts":-3}`, "max_attempts", "must be 1 or more"},
		{`{"kind":"k","enqueued_at":"yesterday"}`, "enqueued_at", "not an RFC 3339 time"},
		{`{"kind":"k","job_id":"../etc"}`, "job_id", "must be 1–128 characters"},
		{`{"kind":"k","version":2}`, "version", "not supported"},
		{`{"kind":"k","max_attempt":3}`, "max_attempt", "unknown field"},
		{`{"kind":"k","callback":{}}`, "callback", "needs url or queue"},
		{`{"kind":"k","args":{"a":1},"args_ref":{"container":"c","blob":"b"}}`, "args_ref", "cannot be combined"},
		{`{"kind":"k","errors":[{"attempt":0,"at":"2026-01-01T00:00:00Z","error":"x"}]}`, "errors[0].attempt", "must be 1 or more"},
		{"{\"kind\":\"k\",\"args\":\"\xff\"}", "", "not valid UTF-8"},
	}
	for _, c := range cases {
		_, err := Decode([]byte(c.body))
		var fe *FieldError
		if !errors.As(err, &fe) {
			t.Errorf("%q: want *FieldError, got %v", c.body, err)
			continue
		}
		if fe.Field != c.field || !strings.Contains(fe.Problem, c.problem) {
			t.Errorf("%q: got field %q problem %q; want field %q containing %q", c.body, fe.Field, fe.Problem, c.field, c.problem)
		}
	}
}

func TestNormalizeFillsDefaults(t *testing.T) {
	e, err := Decode([]byte(`{"kind":"k"}`))
	if err != nil {
		t.Fatal(err)
	}
	ins := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	e.Normalize(ins, "")
	if e.Version != 1 || e.Attempt != 1 || !e.EnqueuedAt.Equal(ins) || ValidJobID(e.JobID) != "" {
		t.Fatalf("normalized %+v", e)
	}
	d1 := DerivedJobID(ins, "message-1")
	if d1 != DerivedJobID(ins, "message-1") || d1 == DerivedJobID(ins, "message-2") || ValidJobID(d1) != "" {
		t.Fatalf("derived ids: %s", d1)
	}
	if !(d1 < DerivedJobID(ins.Add(time.Millisecond), "message-0")) {
		t.Fatal("derived ids not time-sortable")
	}
	a, b := NewJobID(), NewJobID()
	if !(a < b) {
		t.Fatalf("job ids not time-sortable: %s then %s", a, b)
	}
}

func TestEncodeRoundTripAndLimit(t *testing.T) {
	e := &Envelope{Kind: "k", Args: json.RawMessage(`{"x":"<&>"}`), JobID: "j"}
	e.Normalize(time.Time{}, "")
	b, err := e.Encode()
	if err != nil {
		t.Fatal(err)
	}
	back, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	var x struct{ X string }
	if err := json.Unmarshal(back.Args, &x); err != nil || x.X != "<&>" {
		t.Fatalf("args %s", back.Args)
	}

	big := &Envelope{Kind: "k", Args: json.RawMessage(`"` + strings.Repeat("a", MaxMessageBytes) + `"`)}
	_, err = big.Encode()
	var se *SizeError
	if !errors.As(err, &se) || se.Limit != MaxMessageBytes || !strings.Contains(err.Error(), "at most 65536 bytes") {
		t.Fatalf("want SizeError, got %v", err)
	}
}

func TestEncodeShrinksHistoryToFit(t *testing.T) {
	e := &Envelope{Kind: "k", Args: json.RawMessage(`"` + strings.Repeat("a", 40000) + `"`)}
	for i := 1; i <= MaxErrors+5; i++ {
		e.AddError(AttemptError{Attempt: i, At: time.Now(), Error: strings.Repeat("e", 3000), Stack: strings.Repeat("s", 9000)})
	}
	b, err := e.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > MaxMessageBytes {
		t.Fatalf("encoded %d bytes", len(b))
	}
	if len(e.Errors) == 0 || e.Errors[len(e.Errors)-1].Attempt != MaxErrors+5 {
		t.Fatalf("newest error lost: %d errors", len(e.Errors))
	}
	if len(e.Errors[len(e.Errors)-1].Error) > MaxErrorText+len("…") {
		t.Fatal("error text not truncated")
	}
}
