package record

import (
	"testing"
	"time"
)

func diamondRecord(onB OnFailure) *Workflow {
	return &Workflow{WorkflowID: "w", State: WorkflowRunning, Steps: []WorkflowStep{
		{Name: "a", State: StepEnqueued},
		{Name: "b", DependsOn: []string{"a"}, OnFailure: onB, State: StepPending},
		{Name: "c", DependsOn: []string{"a"}, State: StepPending},
		{Name: "d", DependsOn: []string{"b", "c"}, State: StepPending},
		{Name: "e", DependsOn: []string{"d"}, State: StepPending},
	}}
}

func states(w *Workflow) string {
	s := string(w.State) + ":"
	for _, st := range w.Steps {
		s += " " + st.Name + "=" + string(st.State)
	}
	return s
}

// TestStepEndedTransitions walks the diamond under each policy and checks that a step's
// second end, a step of an ended workflow and an unknown step change nothing (states
// never go back).
func TestStepEndedTransitions(t *testing.T) {
	now := time.Unix(1, 0)
	for _, c := range []struct {
		onB  OnFailure
		want string
	}{
		{FailWorkflow, "failed: a=succeeded b=failed c=cancelled d=cancelled e=cancelled"},
		{SkipDependants, "running: a=succeeded b=failed c=enqueued d=skipped e=skipped"},
		{Continue, "running: a=succeeded b=failed c=enqueued d=pending e=pending"},
	} {
		w, ready := StepEnded(diamondRecord(c.onB), "a", StepSucceeded, now)
		if len(ready) != 2 || ready[0] != "b" || ready[1] != "c" {
			t.Fatalf("ready after a: %v", ready)
		}
		if again, _ := StepEnded(w, "a", StepFailed, now); again != nil {
			t.Fatalf("a second end of a changed the record: %s", states(again))
		}
		w, _ = StepEnded(w, "b", StepFailed, now)
		if got := states(w); got != c.want {
			t.Fatalf("%s: %s, want %s", c.onB, got, c.want)
		}
		if w.State != WorkflowRunning {
			if next, _ := StepEnded(w, "c", StepSucceeded, now); next != nil {
				t.Fatalf("a step of an ended workflow changed it: %s", states(next))
			}
			continue
		}
		w, ready = StepEnded(w, "c", StepSucceeded, now)
		if c.onB == Continue && (len(ready) != 1 || ready[0] != "d") {
			t.Fatalf("continue: ready after c: %v", ready)
		}
		if c.onB == SkipDependants && w.State != WorkflowSucceeded {
			t.Fatalf("skip: %s", states(w))
		}
	}
	if w, _ := StepEnded(diamondRecord(""), "zz", StepSucceeded, now); w != nil {
		t.Fatal("an unknown step changed the record")
	}
	w := CancelWorkflow(diamondRecord(""), now)
	if got := states(w); got != "cancelled: a=cancelled b=cancelled c=cancelled d=cancelled e=cancelled" || CancelWorkflow(w, now) != nil {
		t.Fatalf("cancel: %s", got)
	}
}
