package ui_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/internal/testenv"
	"github.com/nightshift-jobs/nightshift/record"
	"github.com/nightshift-jobs/nightshift/ui"
)

// chain is a workflow of echo steps: a, then b and c (c continues on failure).
func chain(id string) nightshift.WorkflowParams {
	return nightshift.WorkflowParams{WorkflowID: id, Name: "chain", Steps: []nightshift.WorkflowStepSpec{
		{Name: "a", Args: echoArgs{Msg: "step a"}},
		{Name: "b", Args: echoArgs{Msg: "step b"}, DependsOn: []string{"a"}},
		{Name: "c", Args: echoArgs{Msg: "step c"}, DependsOn: []string{"a"}, OnFailure: record.Continue},
	}}
}

// TestWorkflowPages runs a workflow to its end and opens its page (every step, its state,
// dependencies, policy and job), finds it through the lookup form and a step's job page,
// and cancels a second workflow that has a pending step (refused without the CSRF token).
func TestWorkflowPages(t *testing.T) {
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			e := newEnv(t, b.Clients(t), ui.Options{})
			ctx := context.Background()
			if _, err := e.c.StartWorkflow(ctx, chain("wf-done")); err != nil {
				t.Fatal(err)
			}
			e.drain()
			e.login()
			w, err := e.c.Workflow(ctx, "wf-done")
			if err != nil || w.State != record.WorkflowSucceeded {
				t.Fatalf("wf-done: %v %v", w, err)
			}

			code, body := e.get("/workflows/wf-done")
			if code != http.StatusOK || strings.Count(body, `class="step"`) != 3 || !strings.Contains(body, `id="workflow-state">succeeded`) ||
				!strings.Contains(body, "continue") || strings.Contains(body, `id="cancel-workflow"`) || strings.Contains(body, `http-equiv="refresh"`) {
				t.Fatalf("workflow page: %d %s", code, body)
			}
			for _, s := range w.Steps {
				if !strings.Contains(body, `href="/jobs/`+s.JobID+`"`) || !strings.Contains(body, `href="/jobs/`+s.JobID+`/result"`) {
					t.Fatalf("workflow page lacks the job and result links of step %s: %s", s.Name, body)
				}
			}
			_, body = e.get("/jobs/" + w.Step("b").JobID)
			if !strings.Contains(body, `href="/workflows/wf-done"`) || !strings.Contains(body, "step b") {
				t.Fatalf("a step's job page does not link its workflow: %s", body)
			}

			e.http.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
			resp, err := e.http.Get(e.srv.URL + "/workflows?id=wf-done")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/workflows/wf-done" {
				t.Fatalf("lookup: %d %q", resp.StatusCode, resp.Header.Get("Location"))
			}
			e.http.CheckRedirect = nil
			if code, body = e.get("/workflows"); code != http.StatusOK || !strings.Contains(body, `id="workflow-lookup"`) {
				t.Fatalf("lookup page: %d %s", code, body)
			}
			if code, _ = e.get("/workflows/no-such-workflow"); code != http.StatusNotFound {
				t.Fatalf("missing workflow: %d", code)
			}
			if code, _ = e.get("/workflows?id=" + url.QueryEscape("bad id/x")); code != http.StatusBadRequest {
				t.Fatalf("bad workflow id: %d", code)
			}

			// A workflow with a pending step: cancel it.
			if _, err := e.c.StartWorkflow(ctx, chain("wf-cancel")); err != nil {
				t.Fatal(err)
			}
			_, page := e.get("/workflows/wf-cancel")
			if !strings.Contains(page, `id="cancel-workflow"`) || !strings.Contains(page, `http-equiv="refresh"`) || !strings.Contains(page, ">pending<") {
				t.Fatalf("running workflow page: %s", page)
			}
			token := e.csrf(page)
			for _, form := range []url.Values{{}, {"csrf": {token + "x"}}} {
				if code, _ := e.post("/workflows/wf-cancel/cancel", form); code != http.StatusForbidden {
					t.Fatalf("cancel with CSRF %v: %d", form, code)
				}
			}
			if w, _ := e.c.Workflow(ctx, "wf-cancel"); w.State != record.WorkflowRunning {
				t.Fatalf("wf-cancel after refused POSTs: %s", w.State)
			}
			code, body = e.post("/workflows/wf-cancel/cancel", url.Values{"csrf": {token}})
			if code != http.StatusOK || !strings.Contains(body, "The workflow is cancelled") || !strings.Contains(body, `id="workflow-state">cancelled`) {
				t.Fatalf("cancel: %d %s", code, body)
			}
			w, _ = e.c.Workflow(ctx, "wf-cancel")
			for _, s := range w.Steps {
				if s.State != record.StepCancelled {
					t.Fatalf("step %s of the cancelled workflow: %s", s.Name, s.State)
				}
			}
			if st, _ := e.c.Status(ctx, w.Step("a").JobID); st.State != record.StateCancelled {
				t.Fatalf("the enqueued step's job: %s", st.State)
			}
			if _, body = e.post("/workflows/wf-cancel/cancel", url.Values{"csrf": {token}}); !strings.Contains(body, "already ended") {
				t.Fatalf("cancel twice: %s", body)
			}
			e.drain()
			if st, _ := e.c.Status(ctx, w.Step("b").JobID); st != nil {
				t.Fatalf("a pending step of the cancelled workflow ran: %s", st.State)
			}
		})
	}
}
