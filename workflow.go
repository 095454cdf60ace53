package nightshift

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nightshift-jobs/nightshift/envelope"
	"github.com/nightshift-jobs/nightshift/record"
	"github.com/nightshift-jobs/nightshift/storage"
)

// Workflows (docs/workflows.md): a DAG of jobs. The workflow record
// (storage.WorkflowBlob, record.Workflow) lists the steps with their state; each step is a
// job whose id is derived from the workflow id and the step's name and whose meta names
// the workflow and the step (MetaWorkflow, MetaStep). The workflows feature's end hook
// records a step's end (record.StepEnded, If-Match) and enqueues the steps it made ready.

// Meta keys a workflow step's job carries.
const (
	MetaWorkflow = "nightshift.workflow"
	MetaStep     = "nightshift.step"
)

// MaxWorkflowSteps bounds the steps of one workflow (its record is one blob).
const MaxWorkflowSteps = 2000

// WorkflowStepSpec is one step of a workflow to start.
type WorkflowStepSpec struct {
	// Name names the step, unique in the workflow.
	Name string
	// Args are the step's job (its kind and args). Without Args, Kind and RawArgs (JSON)
	// name it, as for a job enqueued from outside Go.
	Args    JobArgs
	Kind    string
	RawArgs json.RawMessage
	// DependsOn names the steps that must succeed before this one runs.
	DependsOn []string
	// OnFailure is what the step's failure does (default record.FailWorkflow).
	OnFailure record.OnFailure
}

// WorkflowParams describe a workflow to start.
type WorkflowParams struct {
	// WorkflowID names the workflow; default a new time-sortable id. Starting a
	// workflow whose id exists resumes its start (a crash while starting neither loses
	// nor duplicates steps).
	WorkflowID string
	Name       string
	Steps      []WorkflowStepSpec
	// CallbackURL or CallbackQueue (one of them) is told once when the workflow ends
	// (succeeded, failed or cancelled), checked and delivered as a job's callback
	// (EnqueueOptions.CallbackURL, HandlerOptions.OnWorkflowEnd).
	CallbackURL   string
	CallbackQueue string
}

// ErrInvalidWorkflow is returned (wrapped) for a workflow that is not a DAG of named steps.
var ErrInvalidWorkflow = errors.New("nightshift: invalid workflow")

// StartWorkflow writes the workflow record (If-None-Match; an existing one is resumed)
// and enqueues the steps that depend on nothing.
func (c *Client) StartWorkflow(ctx context.Context, p WorkflowParams) (*record.Workflow, error) {
	w, err := newWorkflow(p, time.Now().UTC())
	if err != nil {
		return nil, err
	}
	if w.Callback, err = c.buildCallback(&EnqueueOptions{CallbackURL: p.CallbackURL, CallbackQueue: p.CallbackQueue}); err != nil {
		return nil, fmt.Errorf("nightshift: start workflow %s: %w", w.WorkflowID, err)
	}
	if _, err := c.store.PutWorkflow(ctx, w, ""); err != nil {
		if !storage.IsConflict(err) {
			return nil, fmt.Errorf("nightshift: start workflow %s: %w", w.WorkflowID, err)
		}
		if w, _, err = c.store.GetWorkflow(ctx, w.WorkflowID); err != nil {
			return nil, fmt.Errorf("nightshift: start workflow %s: %w", p.WorkflowID, err)
		}
	}
	for _, s := range w.Steps {
		if s.State == record.StepEnqueued {
			if err := c.enqueueStep(ctx, w, &s); err != nil {
				return nil, err
			}
		}
	}
	return w, nil
}

// newWorkflow validates p and builds the record: roots enqueued, the rest pending.
func newWorkflow(p WorkflowParams, now time.Time) (*record.Workflow, error) {
	if p.WorkflowID == "" {
		p.WorkflowID = envelope.NewJobID()
	}
	if why := envelope.ValidJobID(p.WorkflowID); why != "" {
		return nil, fmt.Errorf("%w: id %q %s", ErrInvalidWorkflow, p.WorkflowID, why)
	}
	if len(p.Steps) == 0 || len(p.Steps) > MaxWorkflowSteps {
		return nil, fmt.Errorf("%w: %d steps (1 to %d)", ErrInvalidWorkflow, len(p.Steps), MaxWorkflowSteps)
	}
	w := &record.Workflow{WorkflowID: p.WorkflowID, Name: p.Name, State: record.WorkflowRunning, CreatedAt: now, UpdatedAt: now}
	for _, s := range p.Steps {
		kind, args, err := stepJob(s)
		if err != nil || s.Name == "" || w.Step(s.Name) != nil {
			return nil, fmt.Errorf("%w: step %q: every step needs a unique name and a job (args or kind): %v", ErrInvalidWorkflow, s.Name, err)
		}
		switch s.OnFailure {
		case "", record.FailWorkflow, record.SkipDependants, record.Continue:
		default:
			return nil, fmt.Errorf("%w: step %q: unknown on_failure %q", ErrInvalidWorkflow, s.Name, s.OnFailure)
		}
		state := record.StepPending
		if len(s.DependsOn) == 0 {
			state = record.StepEnqueued
		}
		w.Steps = append(w.Steps, record.WorkflowStep{Name: s.Name, Kind: kind, Args: args, DependsOn: s.DependsOn,
			OnFailure: s.OnFailure, JobID: envelope.DerivedJobID(now, "workflow/"+p.WorkflowID+"/"+s.Name), State: state})
	}
	return w, checkDAG(w)
}

// stepJob returns a step's kind and JSON args.
func stepJob(s WorkflowStepSpec) (string, json.RawMessage, error) {
	if s.Args == nil {
		if s.Kind == "" {
			return "", nil, errors.New("no args and no kind")
		}
		if len(s.RawArgs) > 0 && !json.Valid(s.RawArgs) {
			return "", nil, errors.New("args are not JSON")
		}
		return s.Kind, s.RawArgs, nil
	}
	args, err := json.Marshal(s.Args)
	return s.Args.Kind(), args, err
}

// checkDAG checks that every dependency names a step and that there is no cycle.
func checkDAG(w *record.Workflow) error {
	const unseen, visiting, done = 0, 1, 2
	mark := map[string]int{}
	var visit func(name string) error
	visit = func(name string) error {
		switch mark[name] {
		case visiting:
			return fmt.Errorf("%w: a cycle goes through step %q", ErrInvalidWorkflow, name)
		case done:
			return nil
		}
		mark[name] = visiting
		for _, d := range w.Step(name).DependsOn {
			if w.Step(d) == nil {
				return fmt.Errorf("%w: step %q depends on %q, which is not a step", ErrInvalidWorkflow, name, d)
			}
			if err := visit(d); err != nil {
				return err
			}
		}
		mark[name] = done
		return nil
	}
	for _, s := range w.Steps {
		if err := visit(s.Name); err != nil {
			return err
		}
	}
	return nil
}

// enqueueStep enqueues a step's job under its derived id; an id already used means an
// earlier call enqueued it.
func (c *Client) enqueueStep(ctx context.Context, w *record.Workflow, s *record.WorkflowStep) error {
	_, err := c.EnqueueRaw(ctx, s.Kind, s.Args, &EnqueueOptions{JobID: s.JobID,
		Meta: map[string]string{MetaWorkflow: w.WorkflowID, MetaStep: s.Name}})
	if err != nil && !errors.Is(err, ErrJobExists) {
		return fmt.Errorf("nightshift: workflow %s: enqueue step %s: %w", w.WorkflowID, s.Name, err)
	}
	return nil
}

// Workflow reads a workflow record: its state and every step's.
func (c *Client) Workflow(ctx context.Context, workflowID string) (*record.Workflow, error) {
	w, _, err := c.store.GetWorkflow(ctx, workflowID)
	if err != nil {
		return nil, fmt.Errorf("nightshift: %w", err)
	}
	return w, nil
}

// CancelWorkflow cancels a running workflow: pending steps never run and enqueued ones
// are cancelled (Client.Cancel; a running step is cancelled through its status). It
// returns the record as stored afterwards.
func (c *Client) CancelWorkflow(ctx context.Context, workflowID string) (*record.Workflow, error) {
	before, _, err := c.store.GetWorkflow(ctx, workflowID)
	if err != nil {
		return nil, fmt.Errorf("nightshift: %w", err)
	}
	w, _, err := c.store.UpdateWorkflow(ctx, workflowID, func(cur *record.Workflow) *record.Workflow {
		return record.CancelWorkflow(cur, time.Now().UTC())
	})
	if err != nil {
		return nil, fmt.Errorf("nightshift: %w", err)
	}
	for _, s := range before.Steps {
		if s.State == record.StepEnqueued {
			if _, err := c.Cancel(ctx, s.JobID); err != nil && !errors.Is(err, ErrTerminal) {
				return w, fmt.Errorf("nightshift: workflow %s: cancel step %s: %w", workflowID, s.Name, err)
			}
		}
	}
	return w, nil
}

// StepResult reads into v the result of step (a step this one depends on, or any other
// that succeeded) of the workflow of the running job. It needs the context of a running
// workflow step.
func StepResult(ctx context.Context, step string, v any) error {
	jc := jobFromContext(ctx)
	if jc == nil || jc.client == nil {
		return errors.New("nightshift: StepResult needs the context of a running workflow step")
	}
	st, err := jc.client.Status(ctx, jc.jobID)
	if err != nil {
		return err
	}
	wid := st.Meta[MetaWorkflow]
	if wid == "" {
		return fmt.Errorf("nightshift: job %s is not a workflow step", jc.jobID)
	}
	w, err := jc.client.Workflow(ctx, wid)
	if err != nil {
		return err
	}
	s := w.Step(step)
	if s == nil {
		return fmt.Errorf("nightshift: workflow %s has no step %q", wid, step)
	}
	return jc.client.Result(ctx, s.JobID, v)
}

// workflows is the feature of workflow steps: when a step's job ends its state is
// recorded in the workflow (record.StepEnded, If-Match) and the steps it made ready are
// enqueued (derived job ids: a second enqueue is refused). A redelivery of the end
// enqueues every enqueued step again, for a crash between the record and the enqueue;
// a duplicate run of a step changes nothing in the record, so it starts no dependant
// twice. When the workflow fails, the steps still enqueued are cancelled. A step end
// that finds the workflow ended (by it or before it: a cancel, a failure) asks for the
// workflow's callback (onEnd, HandlerOptions.OnWorkflowEnd), whose delivery job id is
// derived from the workflow and its end, so the later asks are refused as duplicates.
type workflows struct {
	admitAll
	x     *executor
	onEnd func(ctx context.Context, w *record.Workflow) error
}

func (f workflows) ended(ctx context.Context, e jobEnd) error {
	wid, name := e.env.Meta[MetaWorkflow], e.env.Meta[MetaStep]
	if wid == "" || name == "" || f.x.ext == nil || f.x.client == nil {
		return nil
	}
	state := record.StepFailed
	switch {
	case e.state == record.StateSucceeded:
		state = record.StepSucceeded
	case e.state == record.StateCancelled:
		state = record.StepCancelled
	}
	var ready []string
	w, wrote, err := f.x.ext.UpdateWorkflow(ctx, wid, func(cur *record.Workflow) *record.Workflow {
		next, r := record.StepEnded(cur, name, state, time.Now().UTC())
		ready = r
		return next
	})
	if err != nil {
		return err
	}
	if !wrote && e.via == endRedelivery {
		ready = ready[:0]
		for _, s := range w.Steps {
			if s.State == record.StepEnqueued && contains(s.DependsOn, name) {
				ready = append(ready, s.Name)
			}
		}
	}
	if err := f.startOrStop(ctx, w, ready); err != nil {
		return err
	}
	if w != nil && w.State != record.WorkflowRunning && w.Callback != nil && f.onEnd != nil {
		return f.onEnd(ctx, w)
	}
	return nil
}

// startOrStop enqueues the ready steps of a running workflow, or cancels the enqueued
// steps of one that failed.
func (f workflows) startOrStop(ctx context.Context, w *record.Workflow, ready []string) error {
	if w.State == record.WorkflowFailed {
		for _, s := range w.Steps {
			if s.State == record.StepCancelled {
				if _, err := f.x.client.Cancel(ctx, s.JobID); err != nil && !errors.Is(err, ErrTerminal) {
					f.x.log.Warn("could not cancel a step of a failed workflow", "workflow_id", w.WorkflowID, "step", s.Name, "error", err.Error())
				}
			}
		}
		return nil
	}
	for _, name := range ready {
		if err := f.x.client.enqueueStep(ctx, w, w.Step(name)); err != nil {
			return err
		}
	}
	return nil
}

func contains(list []string, v string) bool {
	for _, s := range list {
		if s == v {
			return true
		}
	}
	return false
}
