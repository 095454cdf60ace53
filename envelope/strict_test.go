package envelope

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

func wantFieldError(t *testing.T, err error, field, problem string) {
	t.Helper()
	var fe *FieldError
	if !errors.As(err, &fe) {
		t.Fatalf("want *FieldError for %q, got %v", field, err)
	}
	if fe.Field != field || !strings.Contains(fe.Problem, problem) {
		t.Fatalf("got field %q problem %q; want field %q containing %q", fe.Field, fe.Problem, field, problem)
	}
}

// Duplicate keys are refused wherever they are, named by their JSON path, also when one
// of the two is spelt with escapes.
func TestCheckJSONRefusesDuplicateKeysAtAnyDepth(t *testing.T) {
	for _, c := range []struct{ body, field string }{
		{`{"kind":"a","kind":"b"}`, "kind"},
		{`{"kind":"a","\u006bind":"b"}`, "kind"},
		{`{"kind":"k","args":{"user":{"id":1,"name":"x","id":2}}}`, "args.user.id"},
		{`{"kind":"k","args":[0,{"a":1},{"b":1,"b":1}]}`, "args[2].b"},
		{`{"kind":"k","errors":[{"attempt":1},{"class":"x","class":"y"}]}`, "errors[1].class"},
		{`{"kind":"k","meta":{"a.b":"1","a.b":"2"}}`, `meta["a.b"]`},
		{`[{"x":1,"x":1}]`, "[0].x"},
	} {
		wantFieldError(t, CheckJSON([]byte(c.body)), c.field, "duplicate key")
	}
	// The same key in different objects, and equal values under different keys, are fine.
	for _, ok := range []string{
		`{"kind":"k","args":{"kind":"k","a":{"kind":1},"b":[{"kind":2},{"kind":3}]}}`,
		`{"a":1,"A":1}`, `[]`, `{}`, `"s"`, `1e300`, `null`,
	} {
		if err := CheckJSON([]byte(ok)); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
}

func TestCheckJSONBoundsDepth(t *testing.T) {
	nest := func(n int) string { return strings.Repeat(`{"a":`, n) + "1" + strings.Repeat("}", n) }
	if err := CheckJSON([]byte(nest(MaxDepth))); err != nil {
		t.Fatalf("depth %d: %v", MaxDepth, err)
	}
	wantFieldError(t, CheckJSON([]byte(nest(MaxDepth+1))), strings.TrimSuffix(strings.Repeat("a.", MaxDepth), "."), "deeper than 64")
	arrays := strings.Repeat("[", MaxDepth+1) + strings.Repeat("]", MaxDepth+1)
	wantFieldError(t, CheckJSON([]byte(arrays)), strings.Repeat("[0]", MaxDepth), "deeper than 64")
	_, err := Decode([]byte(`{"kind":"k","args":` + nest(MaxDepth) + `}`))
	wantFieldError(t, err, "args"+strings.Repeat(".a", MaxDepth-1), "deeper than 64")
}

func TestCheckJSONRefusesBrokenText(t *testing.T) {
	for _, body := range []string{``, `{`, `{"a":1}{"b":2}`, `{"a":1} x`, `{"a" 1}`, `[1,]`, `NaN`, `{"a":Infinity}`} {
		wantFieldError(t, CheckJSON([]byte(body)), "", "not valid JSON")
	}
}

func TestDecodeRefusesDuplicateKeys(t *testing.T) {
	_, err := Decode([]byte(`{"kind":"a","kind":"b"}`))
	wantFieldError(t, err, "kind", "duplicate key")
	if !strings.Contains(err.Error(), `envelope field "kind"`) {
		t.Fatalf("error text %q", err)
	}
	_, err = Decode([]byte(`{"kind":"k","args":{"user":{"id":1,"id":2}}}`))
	wantFieldError(t, err, "args.user.id", "duplicate key")
}

// One case per bound: the value just past it is refused naming the field and the bound,
// numbers that do not fit are refused rather than wrapped, and the bound itself passes.
func TestDecodeBoundsEveryCountAndDuration(t *testing.T) {
	at := func(d time.Duration) string { return time.Now().Add(d).UTC().Format(time.RFC3339) }
	meta := func(n, klen, vlen int) string {
		m := map[string]string{}
		for i := 0; i < n; i++ {
			m[fmt.Sprintf("%0*d", klen, i)] = strings.Repeat("v", vlen)
		}
		b, _ := json.Marshal(m)
		return string(b)
	}
	errs := func(n, attempt int) string {
		var parts []string
		for i := 0; i < n; i++ {
			parts = append(parts, fmt.Sprintf(`{"attempt":%d,"at":"2026-01-01T00:00:00Z","error":"x"}`, attempt))
		}
		return "[" + strings.Join(parts, ",") + "]"
	}
	cases := []struct {
		field, value, problem string
	}{
		{"timeout_seconds", "1e300", "at most 604800 seconds (7 days"},
		{"timeout_seconds", "1e400", "out of range: at most 604800 seconds"},
		{"timeout_seconds", "604801", "at most 604800 seconds"},
		{"timeout_seconds", `"60"`, "expected a number, got string"},
		{"max_attempts", "101", "at most 100 (envelope.MaxAttemptsLimit)"},
		{"max_attempts", "1e300", "whole number of at most 100"},
		{"max_attempts", "2.5", "whole number of at most 100"},
		{"max_attempts", "99999999999999999999", "whole number of at most 100"},
		{"attempt", "101", "at most 100 (envelope.MaxAttemptsLimit)"},
		{"attempt", "4294967297", "whole number of at most 100"},
		{"replay", "10001", "at most 10000 (envelope.MaxReplays)"},
		{"replay", "-1", "must be 0 or more"},
		{"snoozes", "1001", "at most 1000 (envelope.MaxSnoozes)"},
		{"snoozes", "-1", "must be 0 or more"},
		{"snoozes", "1e300", "whole number of at most 1000"},
		{"version", "1e300", "whole number of at most 1"},
		{"run_at", `"` + at(MaxScheduleAhead+time.Hour) + `"`, "more than 10 years ahead"},
		{"run_at", `"9999-12-31T23:59:59Z"`, "more than 10 years ahead"},
		{"dedupe_key", `"` + strings.Repeat("k", MaxDedupeKeyBytes+1) + `"`, "at most 512"},
		{"meta", meta(MaxMetaEntries+1, 3, 1), "at most 64 (envelope.MaxMetaEntries)"},
		{"meta", meta(1, MaxMetaKeyBytes+1, 1), "at most 128 (envelope.MaxMetaKeyBytes)"},
		{"meta", `{"":"x"}`, "empty key"},
		{"errors", errs(MaxErrors+1, 1), "at most 20 (envelope.MaxErrors)"},
		{"errors[0].attempt", errs(1, MaxAttemptsLimit+1), "at most 100"},
		{"errors", `[{"attempt":1e300,"at":"2026-01-01T00:00:00Z","error":"x"}]`, "does not fit"},
	}
	for _, c := range cases {
		body := fmt.Sprintf(`{"kind":"k",%q:%s}`, c.field, c.value)
		if strings.HasPrefix(c.field, "errors[") {
			body = fmt.Sprintf(`{"kind":"k","errors":%s}`, c.value)
		}
		_, err := Decode([]byte(body))
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != c.field || !strings.Contains(fe.Problem, c.problem) {
			t.Errorf("%s = %.60s: got %v; want field %q containing %q", c.field, c.value, err, c.field, c.problem)
		}
	}
	_, err := Decode([]byte(`{"kind":"k","meta":{"k":"` + strings.Repeat("v", MaxMetaValueBytes+1) + `"}}`))
	wantFieldError(t, err, "meta.k", "at most 1024 (envelope.MaxMetaValueBytes)")

	okBody := fmt.Sprintf(`{"kind":"k","timeout_seconds":%d,"max_attempts":%d,"attempt":%d,"replay":%d,"snoozes":%d,"run_at":%q,"dedupe_key":%q,"meta":%s,"errors":%s}`,
		MaxTimeoutSeconds, MaxAttemptsLimit, MaxAttemptsLimit, MaxReplays, MaxSnoozes, at(MaxScheduleAhead-time.Hour),
		strings.Repeat("k", MaxDedupeKeyBytes), meta(MaxMetaEntries, 3, 10), errs(MaxErrors, MaxAttemptsLimit))
	e, err := Decode([]byte(okBody))
	if err != nil {
		t.Fatalf("values at the bounds refused: %v", err)
	}
	if e.TimeoutSeconds != MaxTimeoutSeconds || e.MaxAttempts != MaxAttemptsLimit || e.Replay != MaxReplays || e.Snoozes != MaxSnoozes || len(e.Meta) != MaxMetaEntries {
		t.Fatalf("decoded %+v", e)
	}
	if _, err := e.Encode(); err != nil {
		t.Fatalf("encode at the bounds: %v", err)
	}
}

// Encode validates too, so a Go producer cannot write what the decoder refuses.
func TestEncodeRefusesValuesPastTheBounds(t *testing.T) {
	for field, e := range map[string]*Envelope{
		"timeout_seconds": {Kind: "k", TimeoutSeconds: 1e300},
		"max_attempts":    {Kind: "k", MaxAttempts: MaxAttemptsLimit + 1},
		"replay":          {Kind: "k", Replay: MaxReplays + 1},
		"snoozes":         {Kind: "k", Snoozes: MaxSnoozes + 1},
		"run_at":          {Kind: "k", RunAt: time.Now().Add(MaxScheduleAhead + time.Hour)},
	} {
		_, err := e.Encode()
		wantFieldError(t, err, field, "envelope.Max")
	}
}

func TestDecodeSecondsAndIntHelpers(t *testing.T) {
	if _, err := DecodeSeconds("run_in_seconds", json.RawMessage("1e400"), float64(MaxRunInSeconds), "10 years"); err == nil {
		t.Fatal("1e400 accepted")
	}
	if f, err := DecodeSeconds("x", json.RawMessage("1.5"), 10, "ten"); err != nil || f != 1.5 {
		t.Fatalf("%v %v", f, err)
	}
	if _, err := DecodeInt("n", json.RawMessage("1e2"), 0, 1000, "a thousand"); err == nil {
		t.Fatal("1e2 accepted as a whole number")
	}
	i, err := DecodeInt("n", json.RawMessage("1000"), 0, 1000, "a thousand")
	if err != nil || i != 1000 {
		t.Fatalf("%v %v", i, err)
	}
	_, err = DecodeInt("n", json.RawMessage("1001"), 0, 1000, "a thousand")
	wantFieldError(t, err, "n", "at most 1000 (a thousand)")
	wantFieldError(t, PrefixPath("args", CheckJSON([]byte(`{"a":{"b":1,"b":2}}`))), "args.a.b", "duplicate")
	wantFieldError(t, PrefixPath("args", CheckJSON([]byte(`[{"b":1,"b":2}]`))), "args[0].b", "duplicate")
}

// The schema carries the same maxima as the constants.
func TestSchemaLimitsMatchConstants(t *testing.T) {
	var s struct {
		Properties map[string]json.RawMessage `json:"properties"`
	}
	if err := json.Unmarshal(Schema, &s); err != nil {
		t.Fatal(err)
	}
	prop := func(name string) map[string]any {
		var m map[string]any
		if err := json.Unmarshal(s.Properties[name], &m); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return m
	}
	num := func(where string, v any, want float64) {
		t.Helper()
		if f, ok := v.(float64); !ok || f != want {
			t.Errorf("schema %s = %v; the constant says %v", where, v, want)
		}
	}
	num("timeout_seconds.maximum", prop("timeout_seconds")["maximum"], MaxTimeoutSeconds)
	num("max_attempts.maximum", prop("max_attempts")["maximum"], MaxAttemptsLimit)
	num("attempt.maximum", prop("attempt")["maximum"], MaxAttemptsLimit)
	num("replay.maximum", prop("replay")["maximum"], MaxReplays)
	num("dedupe_key.maxLength", prop("dedupe_key")["maxLength"], MaxDedupeKeyBytes)
	errs := prop("errors")
	num("errors.maxItems", errs["maxItems"], MaxErrors)
	num("errors.items.attempt.maximum", errs["items"].(map[string]any)["properties"].(map[string]any)["attempt"].(map[string]any)["maximum"], MaxAttemptsLimit)
	meta := prop("meta")
	num("meta.maxProperties", meta["maxProperties"], MaxMetaEntries)
	num("meta.propertyNames.maxLength", meta["propertyNames"].(map[string]any)["maxLength"], MaxMetaKeyBytes)
	num("meta.additionalProperties.maxLength", meta["additionalProperties"].(map[string]any)["maxLength"], MaxMetaValueBytes)
	if MaxRunInSeconds != 315360000 || MaxTimeout != 7*24*time.Hour {
		t.Errorf("derived constants: %d %s", MaxRunInSeconds, MaxTimeout)
	}
	// The schema states what it cannot express.
	var top map[string]any
	_ = json.Unmarshal(Schema, &top)
	if d, _ := top["description"].(string); !strings.Contains(d, "duplicate keys") || !strings.Contains(d, "64 levels") || !strings.Contains(d, "10 years") {
		t.Errorf("schema description does not name the decoder-only limits: %q", d)
	}
	// And it refuses what the decoder refuses at the bounds.
	sch := compileSchema(t)
	for _, body := range []string{
		`{"kind":"k","timeout_seconds":604801}`, `{"kind":"k","max_attempts":101}`, `{"kind":"k","attempt":101}`,
		`{"kind":"k","replay":10001}`, `{"kind":"k","dedupe_key":"` + strings.Repeat("k", MaxDedupeKeyBytes+1) + `"}`,
	} {
		inst, _ := jsonschema.UnmarshalJSON(bytes.NewReader([]byte(body)))
		if sch.Validate(inst) == nil {
			t.Errorf("schema accepts %.80s", body)
		}
		if _, err := Decode([]byte(body)); err == nil {
			t.Errorf("decoder accepts %.80s", body)
		}
	}
}

func compileSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(Schema))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("envelope.schema.json", doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile("envelope.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	return sch
}
