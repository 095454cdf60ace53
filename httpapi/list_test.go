package httpapi_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/nightshift-jobs/nightshift/httpapi"
	"github.com/nightshift-jobs/nightshift/internal/testenv"
	"github.com/nightshift-jobs/nightshift/record"
)

// TestListJobs pages and filters GET /api/jobs, and refuses bad filters with clear 400s.
func TestListJobs(t *testing.T) {
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			e := newEnvOn(t, b.Clients(t))
			ctx := context.Background()
			t0 := time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)
			for i := range 7 {
				st := &record.Status{JobID: "job-" + string(rune('a'+i)), Kind: "test.echo", Queue: e.store.Layout.JobsQueue(),
					State: record.StateSucceeded, UpdatedAt: t0.Add(time.Duration(i) * time.Minute),
					Result: &record.Result{ContentType: "application/json", JSON: json.RawMessage(`{"a":1}`)},
					Logs:   []record.LogLine{{Message: "secret-ish log line"}}}
				if i%3 == 0 {
					st.State, st.Result, st.BatchID = record.StateDead, nil, "b1"
				}
				if _, err := e.store.PutStatus(ctx, st, ""); err != nil {
					t.Fatal(err)
				}
			}
			const base = "https://app.example/api/jobs"
			list := func(query string) (response, httpapi.ListResponse) {
				t.Helper()
				r := e.call(httpapi.FunctionList, "GET", base+query, "", nil, nil)
				var out httpapi.ListResponse
				if r.status == http.StatusOK {
					if err := json.Unmarshal(r.body, &out); err != nil {
						t.Fatalf("GET %s: %v", query, err)
					}
				}
				return r, out
			}
			r, out := list("?state=dead")
			if r.status != http.StatusOK || len(out.Jobs) != 3 || out.Jobs[0].JobID != "job-g" || out.Cursor != "" {
				t.Fatalf("GET ?state=dead: %d %s", r.status, r.body)
			}
			if out.Jobs[0].StatusURL != base+"/job-g" || strings.Contains(string(r.body), "secret-ish") {
				t.Fatalf("list items: %s", r.body)
			}
			_, out = list("?kind=test.echo&state=succeeded")
			if len(out.Jobs) != 4 || !out.Jobs[0].HasResult || out.Jobs[0].Result != nil {
				t.Fatalf("succeeded: %+v", out.Jobs)
			}
			_, out = list("?batch=b1&since=" + url.QueryEscape(t0.Add(time.Minute).Format(time.RFC3339)) + "&until=" + url.QueryEscape(t0.Add(6*time.Minute).Format(time.RFC3339)))
			if len(out.Jobs) != 1 || out.Jobs[0].JobID != "job-d" {
				t.Fatalf("batch b1 between 09:01 and 09:06: %+v", out.Jobs)
			}

			// Pages of 3 through next_url, with the function key left out of it.
			var seen []string
			next := base + "?queue=" + e.store.Layout.JobsQueue() + "&limit=3&code=k"
			for pages := 0; next != ""; pages++ {
				if pages > 4 {
					t.Fatal("paging does not end")
				}
				r := e.call(httpapi.FunctionList, "GET", next, "", nil, nil)
				var page httpapi.ListResponse
				if r.status != http.StatusOK || json.Unmarshal(r.body, &page) != nil {
					t.Fatalf("GET %s: %d %s", next, r.status, r.body)
				}
				for _, j := range page.Jobs {
					seen = append(seen, j.JobID)
				}
				if strings.Contains(page.NextURL, "code=") {
					t.Fatalf("next_url carries the function key: %s", page.NextURL)
				}
				next = page.NextURL
			}
			if strings.Join(seen, ",") != "job-g,job-f,job-e,job-d,job-c,job-b,job-a" {
				t.Fatalf("paged: %v", seen)
			}

			for query, field := range map[string]string{
				"?state=done":                 "state",
				"?kind=bad%20kind":            "kind",
				"?queue=Jobs":                 "queue",
				"?batch=%40b":                 "batch",
				"?since=yesterday":            "since",
				"?until=2026-13-01T00:00:00Z": "until",
				"?since=2026-12-03T10:00:00Z&until=2026-12-03T09:00:00Z": "until",
				"?limit=0":     "limit",
				"?limit=5000":  "limit",
				"?cursor=nope": "cursor",
				"?status=dead": "status",
			} {
				r, _ := list(query)
				p := r.json(t)
				errs, _ := p["errors"].([]any)
				if r.status != http.StatusBadRequest || r.headers["Content-Type"] != "application/problem+json" || len(errs) == 0 ||
					errs[0].(map[string]any)["field"] != field || p["type"] != httpapi.ProblemTypeBase+"invalid-filter" {
					t.Errorf("GET %s: %d %v %s; want a 400 problem naming %s", query, r.status, r.headers, r.body, field)
				}
			}
			if r := e.call(httpapi.FunctionList, "POST", base, "", nil, nil); r.status != http.StatusMethodNotAllowed {
				t.Errorf("POST to the list function: %d", r.status)
			}
		})
	}
}
