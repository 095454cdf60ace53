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
		if req == nil || req.RunInSeconds < 0 || req.MaxAttempts < 0 || req.TimeoutSeconds < 0 {
			t.Fatalf("accepted %q as %+v", body, req)
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
			if envelope.ValidKind(c.Kind) != "" || c.MaxAttempts < 0 || c.TimeoutSeconds < 0 {
				t.Fatalf("accepted child %+v of %q", c, body)
			}
		}
		for i := range req.Children {
			check(&req.Children[i])
		}
		if req.Finalizer != nil {
			check(req.Finalizer)
		}
	})
}
