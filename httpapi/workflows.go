package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/envelope"
	"github.com/nightshift-jobs/nightshift/hostproto"
	"github.com/nightshift-jobs/nightshift/record"
)

// Workflow function names (docs/workflows.md).
const (
	// FunctionWorkflowStart serves POST /api/workflows.
	FunctionWorkflowStart = "WorkflowsAPIStart"
	// FunctionWorkflowStatus serves GET /api/workflows/{id}.
	FunctionWorkflowStatus = "WorkflowsAPIStatus"
	// FunctionWorkflowCancel serves POST /api/workflows/{id}/cancel.
	FunctionWorkflowCancel = "WorkflowsAPICancel"
)

// WorkflowRequest is the body of POST /api/workflows.
type WorkflowRequest struct {
	WorkflowID string        `json:"workflow_id,omitempty"`
	Name       string        `json:"name,omitempty"`
	Steps      []StepRequest `json:"steps"`
	// Callback is told once when the workflow ends ({"url": …} or {"queue": …}, as a
	// job's callback).
	Callback *envelope.Callback `json:"callback,omitempty"`
}

// StepRequest is one step of a workflow request.
type StepRequest struct {
	Name      string          `json:"name"`
	Kind      string          `json:"kind"`
	Args      json.RawMessage `json:"args,omitempty"`
	DependsOn []string        `json:"depends_on,omitempty"`
	OnFailure string          `json:"on_failure,omitempty"`
}

// WorkflowResponse is the body of the workflow routes: the record and its link.
type WorkflowResponse struct {
	*record.Workflow
	StatusURL string `json:"status_url"`
}

// parseWorkflow decodes the body field by field; unknown fields are refused.
func parseWorkflow(body []byte) (*WorkflowRequest, []FieldProblem) {
	req := &WorkflowRequest{}
	steps := func(v json.RawMessage) []FieldProblem {
		var items []json.RawMessage
		if err := json.Unmarshal(v, &items); err != nil {
			return []FieldProblem{{Field: "steps", Problem: `expected an array of steps {"name": …, "kind": …}`}}
		}
		if len(items) == 0 || len(items) > nightshift.MaxWorkflowSteps {
			return []FieldProblem{{Field: "steps", Problem: fmt.Sprintf("has %d steps; 1 to %d (nightshift.MaxWorkflowSteps)", len(items), nightshift.MaxWorkflowSteps)}}
		}
		req.Steps = make([]StepRequest, len(items))
		var errs []FieldProblem
		for i, item := range items {
			errs = append(errs, parseStep(fmt.Sprintf("steps[%d]", i), item, &req.Steps[i])...)
		}
		return errs
	}
	callback := func(v json.RawMessage) []FieldProblem {
		req.Callback = &envelope.Callback{}
		_, errs := decodeObject("callback", v, `{"url": …} or {"queue": …}`, fields{"url": &req.Callback.URL, "queue": &req.Callback.Queue}, nil)
		if len(errs) == 0 && req.Callback.URL == "" && req.Callback.Queue == "" {
			errs = append(errs, FieldProblem{Field: "callback", Problem: "needs url or queue"})
		}
		return errs
	}
	present, errs := decodeObject("", body, `{"steps": […]}`, fields{
		"workflow_id": &req.WorkflowID, "name": &req.Name, "steps": steps, "callback": callback,
	}, nil)
	if present == nil {
		return nil, errs
	}
	if !present["steps"] {
		errs = append(errs, FieldProblem{Field: "steps", Problem: "is required"})
	}
	if req.WorkflowID != "" && envelope.ValidJobID(req.WorkflowID) != "" {
		errs = append(errs, FieldProblem{Field: "workflow_id", Problem: envelope.ValidJobID(req.WorkflowID)})
	}
	return req, errs
}

// parseStep decodes one step object.
func parseStep(path string, v json.RawMessage, s *StepRequest) []FieldProblem {
	present, errs := decodeObject(path, v, `{"name": …, "kind": …, "args": …, "depends_on": […]}`, fields{
		"name": &s.Name, "kind": &s.Kind, "args": &s.Args, "depends_on": &s.DependsOn, "on_failure": &s.OnFailure,
	}, nil)
	if present == nil {
		return errs
	}
	add := func(f, p string) { errs = append(errs, FieldProblem{Field: path + "." + f, Problem: p}) }
	if s.Name == "" {
		add("name", "is required")
	}
	switch {
	case s.Kind == "":
		add("kind", "is required")
	case envelope.ValidKind(s.Kind) != "":
		add("kind", envelope.ValidKind(s.Kind))
	case strings.HasPrefix(s.Kind, ReservedKindPrefix):
		add("kind", fmt.Sprintf("%q is reserved for nightshift's internal jobs", s.Kind))
	}
	switch record.OnFailure(s.OnFailure) {
	case "", record.FailWorkflow, record.SkipDependants, record.Continue:
	default:
		add("on_failure", fmt.Sprintf("%q is not %q, %q or %q", s.OnFailure, record.FailWorkflow, record.SkipDependants, record.Continue))
	}
	return errs
}

// StartWorkflow serves POST /api/workflows: it starts a workflow (a DAG of jobs). Posting
// the same workflow_id again resumes an interrupted start and enqueues nothing twice.
func (a *API) StartWorkflow(ctx context.Context, inv *nightshift.Invocation) (*hostproto.InvokeResponse, error) {
	r, body, fail, err := a.postRequest(inv, MaxBatchRequestBytes, "start larger workflows from Go: Client.StartWorkflow")
	if fail != nil || err != nil {
		return fail, err
	}
	req, errs := parseWorkflow(body)
	if len(errs) == 0 && a.opts.Kinds != nil {
		kinds := a.opts.Kinds()
		for i, s := range req.Steps {
			if !slices.Contains(kinds, s.Kind) {
				errs = append(errs, FieldProblem{Field: fmt.Sprintf("steps[%d].kind", i), Problem: fmt.Sprintf("%q is not a kind this app runs (kinds: %s)", s.Kind, strings.Join(kinds, ", "))})
			}
		}
	}
	if len(errs) > 0 {
		return a.fail(r, problem(http.StatusBadRequest, "invalid-request", "Invalid workflow request", summarize(errs), errs...)), nil
	}
	base, err := collectionURL(r, "workflows")
	if err != nil {
		return nil, &hostproto.RequestError{Problem: err.Error()}
	}
	p := nightshift.WorkflowParams{WorkflowID: req.WorkflowID, Name: req.Name}
	if req.Callback != nil {
		p.CallbackURL, p.CallbackQueue = req.Callback.URL, req.Callback.Queue
	}
	for _, s := range req.Steps {
		p.Steps = append(p.Steps, nightshift.WorkflowStepSpec{Name: s.Name, Kind: s.Kind, RawArgs: s.Args, DependsOn: s.DependsOn, OnFailure: record.OnFailure(s.OnFailure)})
	}
	w, err := a.client.StartWorkflow(withRequestTrace(ctx, r), p)
	if err != nil {
		if errors.Is(err, nightshift.ErrInvalidWorkflow) {
			return a.fail(r, problem(http.StatusBadRequest, "invalid-request", "Invalid workflow request", err.Error())), nil
		}
		if fe := (*envelope.FieldError)(nil); errors.As(err, &fe) {
			fp := FieldProblem{Field: fe.Field, Problem: fe.Problem}
			return a.fail(r, problem(http.StatusBadRequest, "invalid-request", "Invalid workflow request", summarize([]FieldProblem{fp}), fp)), nil
		}
		a.opts.Logger.Error("workflow start failed", "workflow_id", req.WorkflowID, "error", err.Error())
		return a.fail(r, problem(http.StatusServiceUnavailable, "storage-unavailable", "Storage unavailable",
			"the workflow could not be started completely; post the same request again with this workflow_id to resume it")), nil
	}
	su := statusURL(base, w.WorkflowID)
	return respond(http.StatusAccepted, map[string]string{"Location": su, "Retry-After": "2"}, WorkflowResponse{Workflow: w, StatusURL: su},
		fmt.Sprintf("started workflow %s (%d steps)", w.WorkflowID, len(w.Steps))), nil
}

// WorkflowStatus serves GET /api/workflows/{id}: the workflow and every step's state.
func (a *API) WorkflowStatus(ctx context.Context, inv *nightshift.Invocation) (*hostproto.InvokeResponse, error) {
	return a.workflowRoute(ctx, inv, http.MethodGet, a.client.Workflow)
}

// CancelWorkflow serves POST /api/workflows/{id}/cancel: pending steps never run and
// enqueued ones are cancelled.
func (a *API) CancelWorkflow(ctx context.Context, inv *nightshift.Invocation) (*hostproto.InvokeResponse, error) {
	return a.workflowRoute(ctx, inv, http.MethodPost, a.client.CancelWorkflow)
}

func (a *API) workflowRoute(ctx context.Context, inv *nightshift.Invocation, method string, do func(context.Context, string) (*record.Workflow, error)) (*hostproto.InvokeResponse, error) {
	r, err := decodeRequest(inv)
	if err != nil {
		return nil, err
	}
	if p := checkMethod(r, method); p != nil {
		return a.fail(r, p), nil
	}
	id := param(inv, r, "id")
	if p := envelope.ValidJobID(id); p != "" {
		return a.fail(r, problem(http.StatusBadRequest, "invalid-request", "Invalid workflow id", "workflow id "+p, FieldProblem{Field: "id", Problem: p})), nil
	}
	base, err := collectionURL(r, "workflows")
	if err != nil {
		return nil, &hostproto.RequestError{Problem: err.Error()}
	}
	w, err := do(ctx, id)
	if err != nil {
		if errors.Is(err, nightshift.ErrNotFound) {
			return a.fail(r, problem(http.StatusNotFound, "workflow-not-found", "Workflow not found", fmt.Sprintf("no workflow %s", id))), nil
		}
		a.opts.Logger.Error("workflow request failed", "workflow_id", id, "error", err.Error())
		return a.fail(r, problem(http.StatusServiceUnavailable, "storage-unavailable", "Storage unavailable", "the workflow could not be read or written; try again")), nil
	}
	var hdr map[string]string
	if w.State == record.WorkflowRunning {
		hdr = map[string]string{"Retry-After": "2"}
	}
	return respond(http.StatusOK, hdr, WorkflowResponse{Workflow: w, StatusURL: statusURL(base, id)}, fmt.Sprintf("workflow %s: %s", id, w.State)), nil
}
