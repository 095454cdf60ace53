package ui_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/nightshift-jobs/nightshift/internal/testenv"
	"github.com/nightshift-jobs/nightshift/record"
	"github.com/nightshift-jobs/nightshift/ui"
)

// TestActions cancels a queued job and replays dead letters (one, then a selection through
// the confirmation step), and checks that a POST without the CSRF token is refused.
func TestActions(t *testing.T) {
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			e := newEnv(t, b.Clients(t), ui.Options{})
			e.seed()
			e.enqueue(failArgs{Note: "second"}, "fail-2")
			e.enqueue(failArgs{Note: "third"}, "fail-3")
			e.enqueue(echoArgs{Msg: "to cancel"}, "cancel-me")
			// Run the failing ones to their death; cancel-me is cancelled first.
			e.login()
			_, page := e.get("/jobs/cancel-me")
			token := e.csrf(page)
			ctx := context.Background()

			// Without the token, or with a wrong one, nothing happens.
			for _, form := range []url.Values{{}, {"csrf": {token + "x"}}} {
				if code, _ := e.post("/jobs/cancel-me/cancel", form); code != http.StatusForbidden {
					t.Fatalf("cancel with CSRF %v: %d", form, code)
				}
				if code, _ := e.post("/dead/fail-1/replay", form); code != http.StatusForbidden {
					t.Fatalf("replay with CSRF %v: %d", form, code)
				}
			}
			// A POST from another origin is refused even with the token.
			req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/jobs/cancel-me/cancel", strings.NewReader(url.Values{"csrf": {token}}.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("Origin", "http://evil.example")
			if resp, err := e.http.Do(req); err != nil || resp.StatusCode != http.StatusForbidden {
				t.Fatalf("cross-origin POST: %v %v", resp, err)
			} else {
				resp.Body.Close()
			}
			if st, _ := e.c.Status(ctx, "cancel-me"); st.State != record.StateQueued {
				t.Fatalf("cancel-me after refused POSTs: %s", st.State)
			}
			if code, _ := e.get("/jobs/cancel-me/cancel"); code != http.StatusMethodNotAllowed {
				t.Fatalf("GET cancel: %d", code)
			}

			code, body := e.post("/jobs/cancel-me/cancel", url.Values{"csrf": {token}})
			if code != http.StatusOK || !strings.Contains(body, "The job is cancelled") {
				t.Fatalf("cancel: %d %s", code, body)
			}
			if st, _ := e.c.Status(ctx, "cancel-me"); st.State != record.StateCancelled {
				t.Fatalf("cancel-me: %s", st.State)
			}
			if _, body = e.post("/jobs/cancel-me/cancel", url.Values{"csrf": {token}}); !strings.Contains(body, "already ended") {
				t.Fatalf("cancel twice: %s", body)
			}
			e.drain()

			// Replay one.
			if code, body = e.post("/dead/fail-1/replay", url.Values{"csrf": {token}}); code != http.StatusOK || !strings.Contains(body, "replayed") {
				t.Fatalf("replay one: %d %s", code, body)
			}
			e.drain()
			if st, _ := e.c.Status(ctx, "fail-1"); st.State != record.StateSucceeded || st.Replay != 1 {
				t.Fatalf("fail-1 after the replay: %s life %d", st.State, st.Replay)
			}
			if _, body = e.post("/dead/fail-1/replay", url.Values{"csrf": {token}}); !strings.Contains(body, "no longer dead") {
				t.Fatalf("replay a succeeded job: %s", body)
			}

			// Replay a selection: the first POST only shows the plan.
			sel := url.Values{"csrf": {token}, "dead_id": {"fail-2", "fail-3"}, "rate": {"1000"}}
			code, body = e.post("/dead/replay", sel)
			if code != http.StatusOK || !strings.Contains(body, `id="confirm"`) || !strings.Contains(body, "would replay") {
				t.Fatalf("replay selection, first step: %d %s", code, body)
			}
			if st, _ := e.c.Status(ctx, "fail-2"); st.State != record.StateDead {
				t.Fatalf("fail-2 before the confirmation: %s", st.State)
			}
			if !strings.Contains(body, `name="rate" value="10"`) {
				t.Fatalf("the rate is not capped at the dashboard's: %s", body)
			}
			sel.Set("confirm", "yes")
			code, body = e.post("/dead/replay", sel)
			if code != http.StatusOK || !strings.Contains(body, "2 replayed") {
				t.Fatalf("replay selection confirmed: %d %s", code, body)
			}
			e.drain()
			for _, id := range []string{"fail-2", "fail-3"} {
				if st, _ := e.c.Status(ctx, id); st.State != record.StateSucceeded {
					t.Fatalf("%s after the group replay: %s", id, st.State)
				}
			}
			// A filter selection whose jobs are no longer dead skips them.
			_, body = e.post("/dead/replay", url.Values{"csrf": {token}, "kind": {"test.fail"}, "confirm": {"yes"}})
			if !strings.Contains(body, "0 replayed, 3 skipped") {
				t.Fatalf("replay by filter, all replayed already: %s", body)
			}
			if code, _ = e.post("/dead/replay", url.Values{"csrf": {token}, "rate": {"-1"}}); code != http.StatusBadRequest {
				t.Fatalf("bad rate: %d", code)
			}
			// Logging out ends the session.
			e.post("/logout", url.Values{"csrf": {token}})
			if code, _ = e.post("/jobs/fail-1/cancel", url.Values{"csrf": {token}}); code != http.StatusUnauthorized {
				t.Fatalf("after logout: %d", code)
			}
		})
	}
}
