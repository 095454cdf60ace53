package nightshift

import (
	"context"
	"fmt"
	"log/slog"
	"testing"

	"github.com/nightshift-jobs/nightshift/internal/store/storetest"
	"github.com/nightshift-jobs/nightshift/internal/testenv"
	"github.com/nightshift-jobs/nightshift/record"
)

type fanArgs struct {
	I int `json:"i"`
}

func (fanArgs) Kind() string { return "test.fan" }

// TestWorkflowFanOutCalls runs a 1,000-step fan-out/fan-in workflow (a root, 1,000 steps
// that depend on it, one that depends on all of them) and a plain batch of 1,000
// children with a finalizer on one in-memory store behind storetest.Counting, and
// reports the storage calls per step of each (docs/workflows.md#costs). The workflow must
// complete once: every step succeeded, each job ran once.
func TestWorkflowFanOutCalls(t *testing.T) {
	const n = 1000
	ctx := context.Background()
	mem := testenv.Memory(t)
	count := storetest.NewCounting(mem.Store())
	st := mem.WithStore(count)
	runs := map[string]int{}
	reg := NewRegistry()
	AddWorkerFunc(reg, func(ctx context.Context, j *Job[fanArgs]) (any, error) {
		runs[j.ID]++
		return j.Args.I, nil
	}, nil)
	h := NewHandler(reg, st, &HandlerOptions{Logger: slog.New(slog.DiscardHandler)})
	client := NewClient(st, nil)
	q := st.Layout.JobsQueue()

	p := WorkflowParams{WorkflowID: "fan-1", Steps: []WorkflowStepSpec{{Name: "root", Args: fanArgs{}}}}
	var all []string
	for i := range n {
		name := fmt.Sprintf("s%04d", i)
		all = append(all, name)
		p.Steps = append(p.Steps, WorkflowStepSpec{Name: name, Args: fanArgs{I: i}, DependsOn: []string{"root"}})
	}
	p.Steps = append(p.Steps, WorkflowStepSpec{Name: "join", Args: fanArgs{}, DependsOn: all})
	if _, err := client.StartWorkflow(ctx, p); err != nil {
		t.Fatal(err)
	}
	testenv.Drain(t, st, h, q, FunctionRunJob, FunctionRunDeadLetter)
	wfCalls := count.Calls()
	w, err := client.Workflow(ctx, "fan-1")
	if err != nil {
		t.Fatal(err)
	}
	if w.State != record.WorkflowSucceeded {
		t.Fatalf("workflow %s", w.State)
	}
	for _, s := range w.Steps {
		if s.State != record.StepSucceeded || runs[s.JobID] != 1 {
			t.Fatalf("step %s %s ran %d times", s.Name, s.State, runs[s.JobID])
		}
	}

	count.Reset()
	children := make([]EnqueueParams, n)
	for i := range children {
		children[i] = EnqueueParams{Args: fanArgs{I: i}}
	}
	if _, err := client.StartBatch(ctx, BatchParams{BatchID: "fan-batch", Children: children, Finalizer: &EnqueueParams{Args: fanArgs{}}}); err != nil {
		t.Fatal(err)
	}
	testenv.Drain(t, st, h, q, FunctionRunJob, FunctionRunDeadLetter)
	batchCalls := count.Calls()
	total := func(m map[string]int) int {
		s := 0
		for _, v := range m {
			s += v
		}
		return s
	}
	t.Logf("1,000-step fan-out/fan-in on memory: workflow %d calls (%.1f per step: %v); batch %d calls (%.1f per child: %v)",
		total(wfCalls), float64(total(wfCalls))/float64(n+2), wfCalls, total(batchCalls), float64(total(batchCalls))/float64(n+1), batchCalls)
}
