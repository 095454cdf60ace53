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

// TestCheckpointSurvivesSIGKILL runs a 12-step job that checkpoints after every step
// (chaos.Steps, 400 ms a step) through the local host (a child process, with the chaos
// handler) and SIGKILLs the handler three times mid-run, each time once a given step has
// started. The job must succeed in its first attempt (each redelivery found the
// checkpoint written under its message and was renewed, docs/semantics.md#checkpoints),
// every step having run, and no more than 12 + 3 step runs in all: each kill re-does at
// most the step it interrupted.
func TestCheckpointSurvivesSIGKILL(t *testing.T) {
	runs, settings, _, client := newStormStorage(t, testenv.ConnectionString(t))
	ctx := context.Background()
	cons := newHostConsumer(t, settings)
	if err := cons.start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("host log (tail):\n%s", cons.logTail())
		}
	})
	const steps, id = 12, "steps-sigkill"
	if _, err := client.Enqueue(ctx, StepsArgs{Steps: steps, MS: 400}, &nightshift.EnqueueOptions{JobID: id}); err != nil {
		t.Fatal(err)
	}
	killed := 0
	for _, at := range []int{2, 5, 8} {
		testenv.WaitFor(t, 2*time.Minute, "step to start", func() bool { return testenv.Runs(runs, StepRunID(id, at)) > 0 })
		for cons.killRunner() == 0 {
			time.Sleep(20 * time.Millisecond)
		}
		killed++
	}
	var st *record.Status
	var err error
	testenv.WaitFor(t, 3*time.Minute, "the job to end", func() bool {
		st, err = client.Status(ctx, id)
		return err == nil && st.State.Terminal()
	})
	if st.State != record.StateSucceeded || st.Attempt != 1 {
		t.Fatalf("job %s in attempt %d (%s), want succeeded in attempt 1", st.State, st.Attempt, st.LastError)
	}
	total, redone := 0, 0
	for i := range steps {
		n := testenv.Runs(runs, StepRunID(id, i))
		if n == 0 {
			t.Fatalf("step %d never ran", i)
		}
		total, redone = total+n, redone+n-1
	}
	if redone > killed {
		t.Fatalf("%d step runs for %d steps and %d kills: more than one step re-done per kill", total, steps, killed)
	}
	t.Logf("checkpoint SIGKILL: %d steps, %d SIGKILLs, %d step runs (%d re-done), succeeded in attempt %d, status runs %d",
		steps, killed, total, redone, st.Attempt, st.Runs)
}
