package ui

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/nightshift-jobs/nightshift/envelope"
	"github.com/nightshift-jobs/nightshift/record"
)

// workflowView is the workflow detail page's data.
type workflowView struct {
	W         *record.Workflow
	Counts    map[record.StepState]int
	CanCancel bool
}

// refresh reloads the page of a running workflow every 5 seconds.
func (v workflowView) refresh() int {
	if v.W.State != record.WorkflowRunning {
		return 0
	}
	return 5
}

// workflows is the lookup page: a form that opens a workflow by id (no listing: the
// workflow records are not indexed, and one read by id is what a lookup costs).
func (s *server) workflows(w http.ResponseWriter, r *http.Request, sess *session) {
	id := strings.TrimSpace(r.URL.Query().Get("id"))
	if id == "" {
		s.render(w, r, http.StatusOK, "workflows", sess, map[string]any{})
		return
	}
	if p := envelope.ValidJobID(id); p != "" {
		s.fail(w, r, sess, http.StatusBadRequest, badRequest{"workflow id " + p})
		return
	}
	s.redirect(w, r, s.opts.Prefix+"/workflows/"+url.PathEscape(id), http.StatusSeeOther)
}

// workflow shows one workflow record: its state and every step's (one read).
func (s *server) workflow(w http.ResponseWriter, r *http.Request, sess *session) {
	id := r.PathValue("id")
	if p := envelope.ValidJobID(id); p != "" {
		s.fail(w, r, sess, http.StatusBadRequest, badRequest{"workflow id " + p})
		return
	}
	wf, err := s.c.Workflow(r.Context(), id)
	if err != nil {
		s.fail(w, r, sess, statusOf(err), err)
		return
	}
	v := workflowView{W: wf, Counts: map[record.StepState]int{}, CanCancel: wf.State == record.WorkflowRunning}
	for _, st := range wf.Steps {
		v.Counts[st.State]++
	}
	s.render(w, r, http.StatusOK, "workflow", sess, v)
}

// cancelWorkflow cancels a running workflow (Client.CancelWorkflow): pending steps never
// run, enqueued ones are cancelled.
func (s *server) cancelWorkflow(w http.ResponseWriter, r *http.Request, sess *session) {
	id := r.PathValue("id")
	if p := envelope.ValidJobID(id); p != "" {
		s.fail(w, r, sess, http.StatusBadRequest, badRequest{"workflow id " + p})
		return
	}
	before, err := s.c.Workflow(r.Context(), id)
	if err != nil {
		s.fail(w, r, sess, statusOf(err), err)
		return
	}
	done := "wf-cancelled"
	if before.State != record.WorkflowRunning {
		done = "wf-ended"
	} else if after, err := s.c.CancelWorkflow(r.Context(), id); err != nil {
		s.fail(w, r, sess, statusOf(err), err)
		return
	} else if after.State != record.WorkflowCancelled {
		done = "wf-ended" // it ended between the read and the cancel
	}
	s.redirect(w, r, s.opts.Prefix+"/workflows/"+url.PathEscape(id)+"?done="+done, http.StatusSeeOther)
}
