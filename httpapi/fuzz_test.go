package httpapi

import (
	"encoding/json"
	"testing"

	"github.com/nightshift-jobs/nightshift/envelope"
)

// The request decoders take untrusted bodies: they never panic, and a body they accept
// is one the API can act on.
func FuzzParseEnqueue(f *testing.F) {
	for _, s := range []string{
		`{"kind":"k","args":{"a":1}}`, `{"kind":"k","callback":{"url":"https://x","queue":"q"}}`,
		`{"kind":"k","callback":[]}`, `{"kind":1,"run_at":"x","meta":{"a":2}}`, `{"priority":"high","queue":"q"}`,
		`[]`, `null`, `{"kind":"k","callback":null}`, `{"kind":"k","run_in_seconds":-1}`,
		`{"kind":"a","kind":"b"}`, `{"kind":"k","args":{"u":{"id":1,"id":2}}}`, `{"kind":"k","timeout_seconds":1e300}`,
		`{"kind":"k","run_in_seconds":1e400,"max_attempts":1e300}`, `{"kind":"k","max_attempts":100,"timeout_seconds":604800}`,
		`{"kind":"k","meta":{"":"x"}}`, `{"kind":"k","max_attempts":0,"run_in_seconds":0}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, errs := parseEnqueue(body)
		if len(errs) > 0 {
			for _, e := range errs {
				if e.Problem == "" {
					t.Fatalf("problem without text: %+v", errs)
				}
			}
			return
		}
		if req == nil || req.RunInSeconds < 0 || req.MaxAttempts < 0 || req.TimeoutSeconds < 0 ||
			req.RunInSeconds > float64(envelope.MaxRunInSeconds) || req.MaxAttempts > envelope.MaxAttemptsLimit ||
			req.TimeoutSeconds > envelope.MaxTimeoutSeconds || envelope.CheckMeta("meta", req.Meta) != nil {
			t.Fatalf("accepted %q as %+v", body, req)
		}
		if err := envelope.CheckJSON(body); err != nil {
			t.Fatalf("accepted %q, which the scanner refuses: %v", body, err)
		}
		if req.Args != nil && !json.Valid(req.Args) {
			t.Fatalf("accepted invalid args %q", req.Args)
		}
	})
}

func FuzzParseBatch(f *testing.F) {
	for _, s := range []string{
		`{"children":[{"kind":"a","args":[1]},{"kind":"b"}],"finalizer":{"kind":"f"}}`,
		`{"children":[],"failure_policy":"fail","allowed_failures":2,"priority":"low"}`,
		`{"children":[{"kind":"a","job_id":"x"}]}`, `{"children":{}}`, `{"children":[1,null,"x"]}`,
		`{"finalizer":[]}`, `{}`, `null`, `{"children":[{"kind":"nightshift.x"}]}`,
		`{"children":[],"children":[]}`, `{"children":[{"kind":"a","args":{"x":1,"x":2}}]}`,
		`{"children":[{"kind":"a","timeout_seconds":1e300,"max_attempts":101}],"allowed_failures":1e300}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, errs := parseBatch(body)
		if len(errs) > 0 {
			return
		}
		if req == nil {
			t.Fatalf("accepted %q without a request", body)
		}
		check := func(c *ChildRequest) {
			if envelope.ValidKind(c.Kind) != "" || c.MaxAttempts < 0 || c.TimeoutSeconds < 0 ||
				c.MaxAttempts > envelope.MaxAttemptsLimit || c.TimeoutSeconds > envelope.MaxTimeoutSeconds || envelope.CheckMeta("meta", c.Meta) != nil {
				t.Fatalf("accepted child %+v of %q", c, body)
			}
		}
		if len(req.Children) > envelope.MaxBatchChildren || req.AllowedFailures < 0 || req.AllowedFailures > envelope.MaxBatchChildren {
			t.Fatalf("accepted batch %q", body)
		}
		for i := range req.Children {
			check(&req.Children[i])
		}
		if req.Finalizer != nil {
			check(req.Finalizer)
		}
	})
}

// FuzzDecodeObject: the field-by-field body decoder never panics, names a field or says
// what is wrong in every problem, and accepts only bodies the strict scanner accepts.
func FuzzDecodeObject(f *testing.F) {
	for _, s := range []string{
		`{"a":"x","n":3,"o":{"b":1}}`, `{"a":"x","a":"y"}`, `{"o":{"b":1,"b":2}}`, `{"n":1e300}`, `{"z":1}`,
		`{"a":null}`, `[]`, `{`, `{"o":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var a string
		var n int
		var o json.RawMessage
		present, errs := decodeObject("", body, "{…}", fields{"a": &a, "n": count("n", &n, 1, 100, "a hundred"), "o": &o}, nil)
		for _, e := range errs {
			if e.Problem == "" {
				t.Fatalf("problem without text: %+v", errs)
			}
		}
		if present == nil && len(errs) == 0 {
			t.Fatalf("%q: neither fields nor problems", body)
		}
		if len(errs) > 0 {
			return
		}
		if err := envelope.CheckJSON(body); err != nil {
			t.Fatalf("accepted %q, which the scanner refuses: %v", body, err)
		}
		if n < 0 || n > 100 {
			t.Fatalf("accepted n = %d", n)
		}
	})
}

func FuzzParseWorkflow(f *testing.F) {
	for _, s := range []string{
		`{"workflow_id":"w","steps":[{"name":"a","kind":"k"},{"name":"b","kind":"k","depends_on":["a"],"on_failure":"continue"}]}`,
		`{"steps":[]}`, `{"steps":{}}`, `{"steps":[1,null]}`, `{}`, `null`, `{"steps":[{"name":"a","kind":"nightshift.x"}]}`,
		`{"steps":[{"name":"a","kind":"k","depends_on":"a"}]}`, `{"steps":[{"name":"a","name":"b","kind":"k"}]}`,
		`{"workflow_id":"bad id","steps":[{"name":"a","kind":"k","args":{"x":1,"x":2}}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, errs := parseWorkflow(body)
		if len(errs) > 0 {
			for _, e := range errs {
				if e.Problem == "" {
					t.Fatalf("problem without text: %+v", errs)
				}
			}
			return
		}
		if req == nil || len(req.Steps) == 0 {
			t.Fatalf("accepted %q without steps", body)
		}
		for _, s := range req.Steps {
			if s.Name == "" || envelope.ValidKind(s.Kind) != "" {
				t.Fatalf("accepted a step without a name or a valid kind: %q", body)
			}
		}
	})
}
