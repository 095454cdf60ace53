package record

import (
	"encoding/json"
	"time"

	"github.com/nightshift-jobs/nightshift/envelope"
)

// WorkflowState is a workflow's lifecycle state. Succeeded, Failed and Cancelled are
// terminal.
type WorkflowState string

// Workflow states.
const (
	WorkflowRunning   WorkflowState = "running"
	WorkflowSucceeded WorkflowState = "succeeded"
	WorkflowFailed    WorkflowState = "failed"
	WorkflowCancelled WorkflowState = "cancelled"
)

// StepState is one workflow step's state. Pending and Enqueued are not terminal; a
// terminal step state never changes again.
type StepState string

// Step states.
const (
	StepPending   StepState = "pending"
	StepEnqueued  StepState = "enqueued"
	StepSucceeded StepState = "succeeded"
	StepFailed    StepState = "failed"
	StepSkipped   StepState = "skipped"
	StepCancelled StepState = "cancelled"
)

// Terminal reports whether the step state is final.
func (s StepState) Terminal() bool { return s != StepPending && s != StepEnqueued }

// OnFailure is a step's failure policy: what a failed (dead or cancelled) step does to
// the workflow.
type OnFailure string

// Failure policies.
const (
	// FailWorkflow (the default): the workflow fails; pending steps never run and
	// enqueued ones are cancelled.
	FailWorkflow OnFailure = "fail"
	// SkipDependants: the steps that depend on it, directly or not, are skipped; the
	// others go on.
	SkipDependants OnFailure = "skip_dependants"
	// Continue: its dependants run as if it had succeeded (they find no result).
	Continue OnFailure = "continue"
)

// WorkflowStep is one step of a workflow: a job of Kind with Args, run once every step it
// depends on has succeeded (or failed under Continue).
type WorkflowStep struct {
	Name      string          `json:"name"`
	Kind      string          `json:"kind"`
	Args      json.RawMessage `json:"args,omitempty"`
	DependsOn []string        `json:"depends_on,omitempty"`
	OnFailure OnFailure       `json:"on_failure,omitempty"`
	// JobID is the step's job id, derived from the workflow id and the step name.
	JobID string    `json:"job_id"`
	State StepState `json:"state"`
}

// Workflow is the record of a DAG of jobs: <batches container>/workflows/<id>.json.
type Workflow struct {
	WorkflowID string         `json:"workflow_id"`
	Name       string         `json:"name,omitempty"`
	State      WorkflowState  `json:"state"`
	Steps      []WorkflowStep `json:"steps"`
	CreatedAt  time.Time      `json:"created_at"`
	UpdatedAt  time.Time      `json:"updated_at"`
	FinishedAt time.Time      `json:"finished_at,omitzero"`
	// Callback, when set, is told once when the workflow reaches a terminal state (the
	// same webhook or queue target as a job's callback; package callback delivers it).
	Callback *envelope.Callback `json:"callback,omitempty"`
}

// Step returns the step named name (nil when there is none).
func (w *Workflow) Step(name string) *WorkflowStep {
	for i := range w.Steps {
		if w.Steps[i].Name == name {
			return &w.Steps[i]
		}
	}
	return nil
}

// StepEnded is the one place a workflow's steps change after creation: step name ended
// in state (StepSucceeded, StepFailed or StepCancelled). It returns the new record and
// the steps that became ready to enqueue (marked StepEnqueued), or nil when nothing
// changes (the step had ended already, or the workflow has: states never go back).
func StepEnded(cur *Workflow, name string, state StepState, now time.Time) (*Workflow, []string) {
	if cur == nil || cur.State != WorkflowRunning {
		return nil, nil
	}
	w := cur.clone()
	s := w.Step(name)
	if s == nil || s.State.Terminal() {
		return nil, nil
	}
	s.State = state
	if state != StepSucceeded {
		switch s.OnFailure {
		case Continue:
		case SkipDependants:
			w.skipDependants(name)
		default:
			w.State = WorkflowFailed
			w.settle(StepCancelled)
		}
	}
	var ready []string
	if w.State == WorkflowRunning {
		ready = w.markReady()
	}
	w.finish(now)
	return w, ready
}

// CancelWorkflow cancels a running workflow: every step not ended is cancelled. It
// returns nil when the workflow has ended.
func CancelWorkflow(cur *Workflow, now time.Time) *Workflow {
	if cur == nil || cur.State != WorkflowRunning {
		return nil
	}
	w := cur.clone()
	w.State = WorkflowCancelled
	w.settle(StepCancelled)
	w.finish(now)
	return w
}

func (w *Workflow) clone() *Workflow {
	c := *w
	c.Steps = append([]WorkflowStep(nil), w.Steps...)
	return &c
}

// settle ends every step not ended in state.
func (w *Workflow) settle(state StepState) {
	for i := range w.Steps {
		if !w.Steps[i].State.Terminal() {
			w.Steps[i].State = state
		}
	}
}

// skipDependants skips the pending steps that depend on name, directly or not.
func (w *Workflow) skipDependants(name string) {
	for i := range w.Steps {
		s := &w.Steps[i]
		if s.State == StepPending && contains(s.DependsOn, name) {
			s.State = StepSkipped
			w.skipDependants(s.Name)
		}
	}
}

// markReady marks the pending steps whose dependencies all settled (succeeded, or failed
// under Continue) enqueued and returns their names. A step with a skipped dependency is
// skipped.
func (w *Workflow) markReady() []string {
	var ready []string
	for i := range w.Steps {
		s := &w.Steps[i]
		if s.State == StepPending && w.depsSettled(s) {
			s.State = StepEnqueued
			ready = append(ready, s.Name)
		}
	}
	return ready
}

func (w *Workflow) depsSettled(s *WorkflowStep) bool {
	for _, d := range s.DependsOn {
		dep := w.Step(d)
		if dep == nil {
			return false
		}
		switch {
		case dep.State == StepSucceeded:
		case dep.State == StepFailed || dep.State == StepCancelled:
			if dep.OnFailure != Continue {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// finish ends a running workflow whose steps have all ended: succeeded when none failed
// (steps that failed under Continue or SkipDependants, and skipped ones, count as failed
// only under FailWorkflow, which ended it already).
func (w *Workflow) finish(now time.Time) {
	w.UpdatedAt = now
	if w.State == WorkflowRunning {
		for _, s := range w.Steps {
			if !s.State.Terminal() {
				return
			}
		}
		w.State = WorkflowSucceeded
	}
	if w.FinishedAt.IsZero() {
		w.FinishedAt = now
	}
}

func contains(list []string, v string) bool {
	for _, s := range list {
		if s == v {
			return true
		}
	}
	return false
}
