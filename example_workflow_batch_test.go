package nightshift_test

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/nightshifttest"
	"github.com/nightshift-jobs/nightshift/record"
)

// ShardArgs is one child of the fan-out step's batch.
type ShardArgs struct {
	Shard int `json:"shard"`
}

func (ShardArgs) Kind() string { return "wf.shard" }

// FanOutArgs is a workflow step whose end is its batch's end: it starts a batch of
// Shards children and snoozes, polling every PollEvery, until the batch has ended.
type FanOutArgs struct {
	Shards    int           `json:"shards"`
	PollEvery time.Duration `json:"poll_every"`
}

func (FanOutArgs) Kind() string { return "wf.fanout" }

// SumArgs is the step after the fan-out.
type SumArgs struct{}

func (SumArgs) Kind() string { return "wf.sum" }

func fanOutRegistry() *nightshift.Registry {
	reg := nightshift.NewRegistry()
	nightshift.AddWorkerFunc(reg, func(ctx context.Context, job *nightshift.Job[ShardArgs]) (any, error) {
		return job.Args.Shard * 10, nil
	}, nil)
	nightshift.AddWorkerFunc(reg, func(ctx context.Context, job *nightshift.Job[FanOutArgs]) (any, error) {
		children := make([]nightshift.EnqueueParams, job.Args.Shards)
		for i := range children {
			children[i] = nightshift.EnqueueParams{Args: ShardArgs{Shard: i}}
		}
		// The batch id is derived from the step's job: every run of the step (its
		// snoozes, a redelivery) resumes the same batch instead of starting another.
		info, err := nightshift.StartBatch(ctx, nightshift.BatchParams{Name: "shards", Children: children})
		if err != nil {
			return nil, err
		}
		b, err := nightshift.JobClient(ctx).Batch(ctx, info.BatchID, nil)
		if err != nil {
			return nil, err
		}
		switch b.State {
		case record.BatchSucceeded:
			return info.BatchID, nil // dependants read the batch id with StepResult
		case record.BatchFailed:
			return nil, nightshift.Permanentf("batch %s failed: %d of %d children", info.BatchID, b.Failed, b.Total)
		}
		return nil, nightshift.Snooze(job.Args.PollEvery) // no attempt spent
	}, &nightshift.WorkerOptions{MaxSnoozes: 100})
	nightshift.AddWorkerFunc(reg, func(ctx context.Context, job *nightshift.Job[SumArgs]) (any, error) {
		var batchID string
		if err := nightshift.StepResult(ctx, "fan-out", &batchID); err != nil {
			return nil, err
		}
		kids, err := nightshift.JobClient(ctx).BatchChildren(ctx, batchID)
		if err != nil {
			return nil, err
		}
		sum := 0
		for _, k := range kids {
			var v int
			if err := json.Unmarshal(k.Result, &v); err != nil {
				return nil, err
			}
			sum += v
		}
		return sum, nil
	}, nil)
	return reg
}

// Fan-out inside a workflow with a batch: the "fan-out" step starts a batch of children
// and ends only once the batch has (it snoozes until then), so "sum" runs after every
// child and reads their results. PollEvery is 0 here for the test kit; use tens of
// seconds in an app (one batch read per poll).
func ExampleStartBatch_workflowStep() {
	app, err := nightshifttest.NewApp(fanOutRegistry(), nil)
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	w, err := app.Client.StartWorkflow(ctx, nightshift.WorkflowParams{WorkflowID: "fan-out-example", Steps: []nightshift.WorkflowStepSpec{
		{Name: "fan-out", Args: FanOutArgs{Shards: 5}},
		{Name: "sum", Args: SumArgs{}, DependsOn: []string{"fan-out"}},
	}})
	if err != nil {
		panic(err)
	}
	if _, err := app.Drain(ctx); err != nil {
		panic(err)
	}
	if w, err = app.Client.Workflow(ctx, w.WorkflowID); err != nil {
		panic(err)
	}
	var sum int
	if err := app.Client.Result(ctx, w.Step("sum").JobID, &sum); err != nil {
		panic(err)
	}
	fmt.Println("workflow:", w.State, "sum:", sum)
	// Output:
	// workflow: succeeded sum: 100
}
