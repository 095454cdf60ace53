package httpapi

import (
	"strings"
	"testing"
)

// TestParsePause: a queue or a kind becomes the target; each bad body is refused with a
// problem naming its field.
func TestParsePause(t *testing.T) {
	if tg, errs := parsePause([]byte(`{"kind":"import.x"}`)); len(errs) > 0 || tg.Kind != "import.x" || tg.Queue != "" {
		t.Fatalf("%+v %v", tg, errs)
	}
	if tg, errs := parsePause([]byte(`{"queue":"jobs-low","kind":null}`)); len(errs) > 0 || tg.Queue != "jobs-low" || tg.Kind != "" {
		t.Fatalf("%+v %v", tg, errs)
	}
	for _, c := range []struct{ body, field, problem string }{
		{``, "", "body is empty"},
		{`null`, "", "not a JSON object"},
		{`[]`, "", "not a JSON object"},
		{`{`, "", ""},
		{`{}`, "kind", "name a queue"},
		{`{"kind":""}`, "kind", "name a queue"},
		{`{"kind":"a","queue":"jobs"}`, "kind", "not both"},
		{`{"kind":1}`, "kind", "expected a string"},
		{`{"kind":"bad kind"}`, "kind", ""},
		{`{"kind":"` + strings.Repeat("k", 300) + `"}`, "kind", ""},
		{`{"queue":"Jobs_Low"}`, "queue", ""},
		{`{"queue":["jobs"]}`, "queue", "expected a string"},
		{`{"kind":"a","until":"1h"}`, "until", "unknown field"},
		{`{"kind":"a","kind":"b"}`, "kind", ""},
	} {
		_, errs := parsePause([]byte(c.body))
		found := false
		for _, e := range errs {
			if e.Field == c.field && strings.Contains(e.Problem, c.problem) && e.Problem != "" {
				found = true
			}
		}
		if !found {
			t.Errorf("%.60s: problems %+v; want field %q containing %q", c.body, errs, c.field, c.problem)
		}
	}
}

// FuzzParsePause: any body is either refused with problems in words or names exactly one
// valid target.
func FuzzParsePause(f *testing.F) {
	for _, s := range []string{`{"kind":"k"}`, `{"queue":"jobs"}`, `{"kind":"a","queue":"b"}`, `{}`, `null`, `[]`,
		`{"kind":"a","kind":"b"}`, `{"queue":"Q Q"}`, `{"kind":{"x":1}}`, `{"until":"1h"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		tg, errs := parsePause(body)
		if len(errs) > 0 {
			for _, e := range errs {
				if e.Problem == "" {
					t.Fatalf("problem without text: %+v", errs)
				}
			}
			return
		}
		if (tg.Kind == "") == (tg.Queue == "") {
			t.Fatalf("accepted %q as %+v", body, tg)
		}
	})
}
