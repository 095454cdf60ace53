package httpapi

import (
	"strings"
	"testing"
	"time"

	"github.com/nightshift-jobs/nightshift/record"
)

var parseNow = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

// TestParseDeadReplay: good bodies become the selection and options; each bad one is
// refused with a problem naming its field.
func TestParseDeadReplay(t *testing.T) {
	sel, opts, errs := parseDeadReplay([]byte(`{"reason":"host_retries_exhausted","cause":"crash","since":"1h","kind":"k.x","limit":7,"after":"dr1.x","dry_run":true}`), parseNow)
	if len(errs) > 0 || sel.Reason != record.ReasonHostRetriesExhausted || sel.Cause != record.CauseCrash || sel.Kind != "k.x" ||
		!sel.Since.Equal(parseNow.Add(-time.Hour)) || opts.Limit != 7 || opts.After != "dr1.x" || !opts.DryRun || opts.Rate != 0 {
		t.Fatalf("%+v %+v %v", sel, opts, errs)
	}
	sel, opts, errs = parseDeadReplay([]byte(`{"all":true,"since":"2026-05-01T00:00:00Z","limit":0}`), parseNow)
	if len(errs) > 0 || !sel.Since.Equal(time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)) || opts.Limit != DefaultDeadReplayLimit {
		t.Fatalf("%+v %+v %v", sel, opts, errs)
	}
	for _, c := range []struct{ body, field, problem string }{
		{``, "", "body is empty"},
		{`   `, "", "body is empty"},
		{`null`, "", "not a JSON object"},
		{`[]`, "", "not a JSON object"},
		{`"x"`, "", "not a JSON object"},
		{`{`, "", ""},
		{`{}`, "all", "give a filter"},
		{`{"all":false}`, "all", "give a filter"},
		{`{"all":"yes"}`, "all", "expected"},
		{`{"reason":1}`, "reason", "expected a string"},
		{`{"reason":"Host_Retries_Exhausted"}`, "reason", "not a reason"},
		{`{"cause":"CRASH"}`, "cause", "neither crash nor job"},
		{`{"cause":["crash"]}`, "cause", "expected a string"},
		{`{"kind":""}`, "all", "give a filter"},
		{`{"kind":"bad kind"}`, "kind", ""},
		{`{"kind":"` + strings.Repeat("k", 300) + `"}`, "kind", ""},
		{`{"since":"0s"}`, "since", "more than 0"},
		{`{"since":"9000h"}`, "since", "at most"},
		{`{"since":"2026-13-01"}`, "since", "RFC 3339"},
		{`{"since":5}`, "since", "expected a string"},
		{`{"all":true,"limit":-1}`, "limit", ""},
		{`{"all":true,"limit":101}`, "limit", "100"},
		{`{"all":true,"limit":1.5}`, "limit", ""},
		{`{"all":true,"limit":1e300}`, "limit", ""},
		{`{"all":true,"limit":"5"}`, "limit", ""},
		{`{"all":true,"after":"` + strings.Repeat("a", 1100) + `"}`, "after", "too long"},
		{`{"all":true,"dry_run":1}`, "dry_run", "expected"},
		{`{"all":true,"rate":100}`, "rate", "unknown field"},
		{`{"all":true,"all":true}`, "all", ""},
		{`{"all":true,"x":{"y":{"y":1,"y":2}}}`, "x.y.y", ""},
	} {
		_, _, errs := parseDeadReplay([]byte(c.body), parseNow)
		found := false
		for _, e := range errs {
			if e.Field == c.field && strings.Contains(e.Problem, c.problem) {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: problems %+v, want field %q with %q", c.body, errs, c.field, c.problem)
		}
	}
}

// FuzzParseDeadReplay: the decoder never panics, and a body it accepts is a bounded
// selection the client can act on.
func FuzzParseDeadReplay(f *testing.F) {
	for _, s := range []string{
		`{"reason":"host_retries_exhausted","cause":"crash","since":"1h"}`, `{"all":true,"limit":100}`,
		`{"kind":"k","after":"dr1.e30","dry_run":true}`, `{}`, `null`, `{"since":"2026-01-01T00:00:00Z"}`,
		`{"cause":"job","cause":"crash"}`, `{"limit":1e300,"all":true}`, `{"since":"-5m"}`, `{"reason":"undecodable","x":1}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		sel, opts, errs := parseDeadReplay(body, parseNow)
		if len(errs) > 0 {
			for _, e := range errs {
				if e.Problem == "" {
					t.Fatalf("problem without text: %+v", errs)
				}
			}
			return
		}
		if opts == nil || opts.Limit < 1 || opts.Limit > MaxDeadReplayLimit || len(opts.After) > 1024 || opts.Rate != 0 {
			t.Fatalf("accepted %q as %+v", body, opts)
		}
		if sel.Cause != "" && sel.Cause != record.CauseCrash && sel.Cause != record.CauseJob {
			t.Fatalf("accepted cause %q", sel.Cause)
		}
		if sel.Since.After(parseNow) && !strings.Contains(string(body), "T") {
			t.Fatalf("a relative since %v is after now", sel.Since)
		}
		if len(sel.DeadIDs) > 0 {
			t.Fatalf("the body named ids: %q", body)
		}
	})
}
