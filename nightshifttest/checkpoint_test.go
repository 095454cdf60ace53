package nightshifttest_test

import (
	"context"
	"errors"
	"testing"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/nightshifttest"
	"github.com/nightshift-jobs/nightshift/record"
	"github.com/nightshift-jobs/nightshift/storage"
)

type exportArgs struct {
	Rows int `json:"rows"`
}

func (exportArgs) Kind() string { return "export_rows" }

// TestCheckpointResumesTheNextAttempt: on the in-memory app, a job checkpoints every row
// (the default progress interval folds them), fails once after row 5, and its retry
// resumes at row 6: every row is exported once, the last checkpoint of the failed attempt
// was written at its end, and the checkpoint is deleted when the job succeeds.
func TestCheckpointResumesTheNextAttempt(t *testing.T) {
	exported := map[int]int{}
	var seqAfterFailure int
	var app *nightshifttest.App
	reg := nightshift.NewRegistry()
	nightshift.AddWorkerFunc(reg, func(ctx context.Context, job *nightshift.Job[exportArgs]) (any, error) {
		var next int
		if _, err := nightshift.Resume(ctx, &next); err != nil {
			return nil, err
		}
		if job.Attempt == 2 {
			var cp record.Checkpoint
			if _, err := app.Storage().GetJSON(ctx, app.Storage().Layout.PayloadsContainer(), storage.CheckpointBlob(job.ID), &cp); err != nil {
				return nil, err
			}
			seqAfterFailure = cp.Seq
		}
		for ; next < job.Args.Rows; next++ {
			exported[next]++
			if err := nightshift.Checkpoint(ctx, next+1); err != nil {
				return nil, err
			}
			if job.Attempt == 1 && next == 5 {
				return nil, errors.New("connection reset")
			}
		}
		return map[string]int{"rows": next}, nil
	}, &nightshift.WorkerOptions{Backoff: nightshift.ConstantBackoff(0)})
	app, err := nightshifttest.NewApp(reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	res, err := app.Client.Enqueue(ctx, exportArgs{Rows: 10}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := app.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	st := nightshifttest.RequireSucceeded(ctx, t, app, res.JobID)
	if st.Attempt != 2 {
		t.Fatalf("attempt %d, want 2", st.Attempt)
	}
	for i := range 10 {
		if exported[i] != 1 {
			t.Fatalf("row %d exported %d times: %v", i, exported[i], exported)
		}
	}
	// Six checkpoints within the interval: the first written at once, the last at the
	// attempt's end.
	if seqAfterFailure != 2 {
		t.Fatalf("checkpoint seq %d after the failed attempt, want 2", seqAfterFailure)
	}
	var cp record.Checkpoint
	if _, err := app.Storage().GetJSON(ctx, app.Storage().Layout.PayloadsContainer(), storage.CheckpointBlob(res.JobID), &cp); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("checkpoint after success: %v, want deleted", err)
	}
}
