//go:build linux

package chaos

import (
	"context"
	"testing"
	"time"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/internal/testenv"
	"github.com/nightshift-jobs/nightshift/record"
)

// TestWorkflowThroughLocalHost runs workflows through the local host (a child process
// with the chaos handler): a 4-step diamond (a → b, c → d) whose root message is
// delivered twice (the test plants a copy before the host starts) passes results along
// and runs every step once; a diamond whose b fails under skip_dependants skips d;
// and a diamond cancelled before the host starts runs no step.
func TestWorkflowThroughLocalHost(t *testing.T) {
	runs, settings, clients, client := newStormStorage(t, testenv.ConnectionString(t))
	ctx := context.Background()
	diamond := func(id string, failB bool) nightshift.WorkflowParams {
		b := nightshift.WorkflowStepSpec{Name: "b", Args: WorkflowStepArgs{N: 10, Deps: []string{"a"}}, DependsOn: []string{"a"}}
		if failB {
			b.Args, b.OnFailure = WorkflowStepArgs{Fail: true}, record.SkipDependants
		}
		return nightshift.WorkflowParams{WorkflowID: id, Steps: []nightshift.WorkflowStepSpec{
			{Name: "a", Args: WorkflowStepArgs{N: 1}}, b,
			{Name: "c", Args: WorkflowStepArgs{N: 100, Deps: []string{"a"}}, DependsOn: []string{"a"}},
			{Name: "d", Args: WorkflowStepArgs{N: 1000, Deps: []string{"b", "c"}}, DependsOn: []string{"b", "c"}},
		}}
	}
	if _, err := client.StartWorkflow(ctx, diamond("wf-ok", false)); err != nil {
		t.Fatal(err)
	}
	q := clients.Layout.JobsQueue()
	msgs, err := clients.Store().Peek(ctx, q, 32)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("peek: %d messages, %v", len(msgs), err)
	}
	if _, err := clients.Store().Enqueue(ctx, q, msgs[0].Text, 0, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := client.StartWorkflow(ctx, diamond("wf-skip", true)); err != nil {
		t.Fatal(err)
	}
	if _, err := client.StartWorkflow(ctx, diamond("wf-cancel", false)); err != nil {
		t.Fatal(err)
	}
	if _, err := client.CancelWorkflow(ctx, "wf-cancel"); err != nil {
		t.Fatal(err)
	}
	cons := newHostConsumer(t, settings)
	if err := cons.start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("host log (tail):\n%s", cons.logTail())
		}
	})
	wait := func(id string) *record.Workflow {
		var w *record.Workflow
		testenv.WaitFor(t, 3*time.Minute, "workflow "+id+" to end", func() bool {
			w, err = client.Workflow(ctx, id)
			return err == nil && w.State != record.WorkflowRunning
		})
		return w
	}
	ok := wait("wf-ok")
	if ok.State != record.WorkflowSucceeded {
		t.Fatalf("wf-ok %s: %+v", ok.State, ok.Steps)
	}
	var d int
	if err := client.Result(ctx, ok.Step("d").JobID, &d); err != nil || d != 1000+10+1+100+1 {
		t.Fatalf("d = %d, %v; want 1112", d, err)
	}
	for _, name := range []string{"a", "b", "c", "d"} { // a: its message was delivered twice
		if n := testenv.Runs(runs, ok.Step(name).JobID); n != 1 {
			t.Fatalf("wf-ok step %s ran %d times", name, n)
		}
	}
	skip := wait("wf-skip")
	if skip.State != record.WorkflowSucceeded || skip.Step("b").State != record.StepFailed || skip.Step("d").State != record.StepSkipped ||
		skip.Step("c").State != record.StepSucceeded || testenv.Runs(runs, skip.Step("d").JobID) != 0 {
		t.Fatalf("wf-skip %s: %+v", skip.State, skip.Steps)
	}
	// The cancelled workflow's root message is on the queue; once the others are done it
	// has been delivered too, and skipped.
	testenv.WaitFor(t, time.Minute, "the queue to empty", func() bool {
		n, err := clients.Store().Count(ctx, q)
		return err == nil && n == 0
	})
	cw, err := client.Workflow(ctx, "wf-cancel")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range cw.Steps {
		if n := testenv.Runs(runs, s.JobID); n != 0 || s.State != record.StepCancelled {
			t.Fatalf("wf-cancel step %s %s ran %d times", s.Name, s.State, n)
		}
	}
	t.Logf("workflows through the local host: diamond succeeded (d = %d, root delivered twice, every step ran once); skip_dependants skipped d; cancelled workflow ran no step", d)
}
