package nightshifttest_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/nightshifttest"
	"github.com/nightshift-jobs/nightshift/record"
)

// stepArgs is a workflow step of the tests: it adds the results of its dependencies to N.
type stepArgs struct {
	N    int      `json:"n"`
	Deps []string `json:"deps,omitempty"`
	Fail bool     `json:"fail,omitempty"`
}

func (stepArgs) Kind() string { return "wf_step" }

type stepRuns struct {
	mu   sync.Mutex
	runs map[string]int
}

func (r *stepRuns) count(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.runs[id]
}

func workflowRegistry(runs *stepRuns) *nightshift.Registry {
	reg := nightshift.NewRegistry()
	nightshift.AddWorkerFunc(reg, func(ctx context.Context, job *nightshift.Job[stepArgs]) (any, error) {
		runs.mu.Lock()
		runs.runs[job.ID]++
		runs.mu.Unlock()
		if job.Args.Fail {
			return nil, nightshift.Permanentf("step fails")
		}
		sum := job.Args.N
		for _, d := range job.Args.Deps {
			var v int
			if err := nightshift.StepResult(ctx, d, &v); err != nil {
				return nil, err
			}
			sum += v
		}
		return sum, nil
	}, &nightshift.WorkerOptions{Backoff: nightshift.ConstantBackoff(0)})
	return reg
}

func diamond(id string, failB record.OnFailure) nightshift.WorkflowParams {
	b := nightshift.WorkflowStepSpec{Name: "b", Args: stepArgs{N: 10, Deps: []string{"a"}}, DependsOn: []string{"a"}}
	if failB != "" {
		b.Args, b.OnFailure = stepArgs{Fail: true}, failB
	}
	return nightshift.WorkflowParams{WorkflowID: id, Steps: []nightshift.WorkflowStepSpec{
		{Name: "a", Args: stepArgs{N: 1}},
		b,
		{Name: "c", Args: stepArgs{N: 100, Deps: []string{"a"}}, DependsOn: []string{"a"}},
		{Name: "d", Args: stepArgs{N: 1000, Deps: []string{"c"}}, DependsOn: []string{"b", "c"}},
	}}
}

// TestWorkflowDiamondInMemory: a 4-step diamond (a → b, c → d) passes results along, each
// step runs once although every step's message is delivered twice (the test plants a
// copy), and starting it again (a resumed start) adds nothing.
func TestWorkflowDiamondInMemory(t *testing.T) {
	runs := &stepRuns{runs: map[string]int{}}
	app, err := nightshifttest.NewApp(workflowRegistry(runs), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	w, err := app.Client.StartWorkflow(ctx, diamond("wf-diamond", ""))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := app.Client.StartWorkflow(ctx, diamond("wf-diamond", "")); err != nil {
		t.Fatal(err)
	}
	q := app.Storage().Layout.JobsQueue()
	for range 10 {
		// Plant a duplicate of every visible message, then deliver everything.
		msgs, err := app.Storage().Store().Peek(ctx, q, 32)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			if _, err := app.Storage().Store().Enqueue(ctx, q, m.Text, 0, 0); err != nil {
				t.Fatal(err)
			}
		}
		if n, err := app.Drain(ctx); err != nil || n == 0 {
			if err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	got, err := app.Client.Workflow(ctx, w.WorkflowID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != record.WorkflowSucceeded {
		t.Fatalf("workflow %s: %+v", got.State, got.Steps)
	}
	for _, s := range got.Steps {
		if s.State != record.StepSucceeded || runs.count(s.JobID) != 1 {
			t.Fatalf("step %s %s ran %d times", s.Name, s.State, runs.count(s.JobID))
		}
	}
	var d int
	if err := app.Client.Result(ctx, got.Step("d").JobID, &d); err != nil || d != 1000+100+1 {
		t.Fatalf("d = %d, %v; want 1101", d, err)
	}
}

// TestWorkflowFailurePolicies: b fails; under fail the workflow fails and d never runs;
// under skip_dependants d is skipped and c still succeeds; under continue d runs.
func TestWorkflowFailurePolicies(t *testing.T) {
	for _, c := range []struct {
		policy record.OnFailure
		state  record.WorkflowState
		d      record.StepState
	}{
		{record.FailWorkflow, record.WorkflowFailed, record.StepCancelled},
		{record.SkipDependants, record.WorkflowSucceeded, record.StepSkipped},
		{record.Continue, record.WorkflowSucceeded, record.StepSucceeded},
	} {
		t.Run(string(c.policy), func(t *testing.T) {
			runs := &stepRuns{runs: map[string]int{}}
			app, err := nightshifttest.NewApp(workflowRegistry(runs), nil)
			if err != nil {
				t.Fatal(err)
			}
			ctx := t.Context()
			w, err := app.Client.StartWorkflow(ctx, diamond("wf-"+string(c.policy), c.policy))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := app.Drain(ctx); err != nil {
				t.Fatal(err)
			}
			got, err := app.Client.Workflow(ctx, w.WorkflowID)
			if err != nil {
				t.Fatal(err)
			}
			if got.State != c.state || got.Step("b").State != record.StepFailed || got.Step("d").State != c.d {
				t.Fatalf("workflow %s, steps %+v", got.State, got.Steps)
			}
			if ran := runs.count(got.Step("d").JobID); (c.d == record.StepSucceeded) != (ran == 1) {
				t.Fatalf("d ran %d times in state %s", ran, c.d)
			}
		})
	}
}

// TestWorkflowCancel: cancelled after its first step ran, the workflow's pending and
// enqueued steps never run.
func TestWorkflowCancel(t *testing.T) {
	runs := &stepRuns{runs: map[string]int{}}
	app, err := nightshifttest.NewApp(workflowRegistry(runs), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	w, err := app.Client.StartWorkflow(ctx, diamond("wf-cancel", ""))
	if err != nil {
		t.Fatal(err)
	}
	// One delivery: a runs and enqueues b and c.
	q := app.Storage().Layout.JobsQueue()
	if n, err := app.DeliverOne(ctx, q); err != nil || n != 1 {
		t.Fatalf("delivered %d, %v", n, err)
	}
	got, err := app.Client.CancelWorkflow(ctx, w.WorkflowID)
	if err != nil || got.State != record.WorkflowCancelled {
		t.Fatalf("cancel: %v, %v", got, err)
	}
	if _, err := app.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	if got, err = app.Client.Workflow(ctx, w.WorkflowID); err != nil {
		t.Fatal(err)
	}
	if got.State != record.WorkflowCancelled || got.Step("a").State != record.StepSucceeded {
		t.Fatalf("workflow %s, steps %+v", got.State, got.Steps)
	}
	for _, name := range []string{"b", "c", "d"} {
		s := got.Step(name)
		if s.State != record.StepCancelled || runs.count(s.JobID) != 0 {
			t.Fatalf("step %s %s ran %d times", name, s.State, runs.count(s.JobID))
		}
	}
	if _, err := app.Client.StartWorkflow(ctx, nightshift.WorkflowParams{Steps: []nightshift.WorkflowStepSpec{
		{Name: "x", Args: stepArgs{}, DependsOn: []string{"y"}}, {Name: "y", Args: stepArgs{}, DependsOn: []string{"x"}},
	}}); !errors.Is(err, nightshift.ErrInvalidWorkflow) {
		t.Fatalf("a cycle: %v", err)
	}
}
