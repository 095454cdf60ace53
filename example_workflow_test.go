package nightshift_test

import (
	"context"
	"fmt"
	"strings"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/nightshifttest"
)

// The jobs of docs/workflows.md: export a table in shards, transform each shard, merge
// the transformed shards, notify.
type ExportArgs struct {
	Table  string `json:"table"`
	Shards int    `json:"shards"`
}

func (ExportArgs) Kind() string { return "wf.export" }

type TransformArgs struct {
	Shard int `json:"shard"`
}

func (TransformArgs) Kind() string { return "wf.transform" }

type MergeArgs struct {
	Shards int `json:"shards"`
}

func (MergeArgs) Kind() string { return "wf.merge" }

type NotifyArgs struct {
	Channel string `json:"channel"`
}

func (NotifyArgs) Kind() string { return "wf.notify" }

func exportRegistry() *nightshift.Registry {
	reg := nightshift.NewRegistry()
	nightshift.AddWorkerFunc(reg, func(ctx context.Context, job *nightshift.Job[ExportArgs]) (any, error) {
		shards := make([]string, job.Args.Shards)
		for i := range shards {
			shards[i] = fmt.Sprintf("%s/part-%d.csv", job.Args.Table, i)
		}
		return shards, nil
	}, nil)
	nightshift.AddWorkerFunc(reg, func(ctx context.Context, job *nightshift.Job[TransformArgs]) (any, error) {
		var shards []string
		if err := nightshift.StepResult(ctx, "export", &shards); err != nil {
			return nil, err
		}
		return strings.Replace(shards[job.Args.Shard], ".csv", ".parquet", 1), nil
	}, nil)
	nightshift.AddWorkerFunc(reg, func(ctx context.Context, job *nightshift.Job[MergeArgs]) (any, error) {
		parts := make([]string, job.Args.Shards)
		for i := range parts {
			if err := nightshift.StepResult(ctx, fmt.Sprintf("transform-%d", i), &parts[i]); err != nil {
				return nil, err
			}
		}
		return strings.Join(parts, "+"), nil
	}, nil)
	nightshift.AddWorkerFunc(reg, func(ctx context.Context, job *nightshift.Job[NotifyArgs]) (any, error) {
		var merged string
		if err := nightshift.StepResult(ctx, "merge", &merged); err != nil {
			return nil, err
		}
		return "posted to " + job.Args.Channel + ": " + merged, nil
	}, nil)
	return reg
}

// exportWorkflow is export → one transform per shard → merge → notify.
func exportWorkflow(id string, shards int) nightshift.WorkflowParams {
	p := nightshift.WorkflowParams{WorkflowID: id, Name: "nightly export", Steps: []nightshift.WorkflowStepSpec{
		{Name: "export", Args: ExportArgs{Table: "orders", Shards: shards}},
	}}
	var transforms []string
	for i := range shards {
		name := fmt.Sprintf("transform-%d", i)
		transforms = append(transforms, name)
		p.Steps = append(p.Steps, nightshift.WorkflowStepSpec{Name: name, Args: TransformArgs{Shard: i}, DependsOn: []string{"export"}})
	}
	p.Steps = append(p.Steps,
		nightshift.WorkflowStepSpec{Name: "merge", Args: MergeArgs{Shards: shards}, DependsOn: transforms},
		// A failed notification does not fail the export.
		nightshift.WorkflowStepSpec{Name: "notify", Args: NotifyArgs{Channel: "#data"}, DependsOn: []string{"merge"}, OnFailure: "continue"},
	)
	return p
}

// A workflow run in memory by the test kit: the steps run as their dependencies succeed
// and read their dependencies' results.
func ExampleClient_StartWorkflow() {
	app, err := nightshifttest.NewApp(exportRegistry(), nil)
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	w, err := app.Client.StartWorkflow(ctx, exportWorkflow("export-2026-12-03", 3))
	if err != nil {
		panic(err)
	}
	if _, err := app.Drain(ctx); err != nil {
		panic(err)
	}
	if w, err = app.Client.Workflow(ctx, w.WorkflowID); err != nil {
		panic(err)
	}
	fmt.Println("workflow:", w.State)
	for _, s := range w.Steps {
		fmt.Println(s.Name, s.State)
	}
	var note string
	if err := app.Client.Result(ctx, w.Step("notify").JobID, &note); err != nil {
		panic(err)
	}
	fmt.Println(note)
	// Output:
	// workflow: succeeded
	// export succeeded
	// transform-0 succeeded
	// transform-1 succeeded
	// transform-2 succeeded
	// merge succeeded
	// notify succeeded
	// posted to #data: orders/part-0.parquet+orders/part-1.parquet+orders/part-2.parquet
}
