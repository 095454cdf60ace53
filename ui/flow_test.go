package ui_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/internal/testenv"
	"github.com/nightshift-jobs/nightshift/ui"
)

// TestFlowPage shows the configured limits and the pauses, and pauses and resumes a kind
// and a queue through its forms (CSRF required, unknown queues refused).
func TestFlowPage(t *testing.T) {
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			limits := map[string]nightshift.Limits{"test.echo": {Concurrency: 3, KeyArg: "msg", Rate: 10}}
			e := newEnv(t, b.Clients(t), ui.Options{Limits: func() map[string]nightshift.Limits { return limits }})
			e.login()
			ctx := context.Background()
			code, page := e.get("/flow")
			if code != http.StatusOK || !strings.Contains(page, "Nothing is paused.") || !strings.Contains(page, "<td>test.echo</td><td class=\"n\">3</td><td>msg</td><td>10 per 1s</td>") {
				t.Fatalf("flow page: %d %s", code, page)
			}
			token := e.csrf(page)
			if code, _ := e.post("/flow/pause", url.Values{"what": {"kind"}, "name": {"test.echo"}}); code != http.StatusForbidden {
				t.Fatalf("pause without CSRF: %d", code)
			}
			if code, _ := e.post("/flow/pause", url.Values{"csrf": {token}, "what": {"queue"}, "name": {"no-such-queue"}}); code != http.StatusBadRequest {
				t.Fatalf("pause of an unknown queue: %d", code)
			}
			if code, _ := e.post("/flow/pause", url.Values{"csrf": {token}, "what": {"nothing"}, "name": {"x"}}); code != http.StatusBadRequest {
				t.Fatalf("pause of no target: %d", code)
			}
			code, page = e.post("/flow/pause", url.Values{"csrf": {token}, "what": {"kind"}, "name": {"test.echo"}})
			if code != http.StatusOK || !strings.Contains(page, "Paused: handlers hold") || strings.Count(page, `class="paused"`) != 1 {
				t.Fatalf("after pausing the kind: %d %s", code, page)
			}
			q := e.store.Layout.LowQueue()
			if code, _ = e.post("/flow/pause", url.Values{"csrf": {token}, "what": {"queue"}, "name": {q}}); code != http.StatusOK {
				t.Fatalf("pause queue: %d", code)
			}
			p, err := e.c.Pauses(ctx)
			if err != nil || p.Kinds["test.echo"].IsZero() || p.Queues[q].IsZero() {
				t.Fatalf("pauses after the forms: %+v %v", p, err)
			}
			for _, f := range []url.Values{{"what": {"kind"}, "name": {"test.echo"}}, {"what": {"queue"}, "name": {q}}} {
				f.Set("csrf", token)
				if code, page = e.post("/flow/resume", f); code != http.StatusOK || !strings.Contains(page, "Resumed") {
					t.Fatalf("resume %v: %d %s", f, code, page)
				}
			}
			if p, err = e.c.Pauses(ctx); err != nil || len(p.Kinds)+len(p.Queues) != 0 {
				t.Fatalf("pauses after resuming: %+v %v", p, err)
			}
		})
	}
}
