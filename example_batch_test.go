package nightshift_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/nightshifttest"
	"github.com/nightshift-jobs/nightshift/record"
)

// CountWordsArgs counts the words of one file (a batch child).
type CountWordsArgs struct {
	File string `json:"file"`
}

// Kind implements nightshift.JobArgs.
func (CountWordsArgs) Kind() string { return "count_words" }

// TotalWordsArgs is the finalizer of a word-count batch.
type TotalWordsArgs struct{}

// Kind implements nightshift.JobArgs.
func (TotalWordsArgs) Kind() string { return "total_words" }

// CountAllArgs fans out one count_words job per file.
type CountAllArgs struct {
	Files []string `json:"files"`
}

// Kind implements nightshift.JobArgs.
func (CountAllArgs) Kind() string { return "count_all" }

// Fan-out/fan-in: a job starts a batch of children and a finalizer; the finalizer runs
// once, after every child ended, and reads their results (docs/batches.md).
func ExampleStartBatch() {
	reg := nightshift.NewRegistry()
	nightshift.AddWorkerFunc(reg, func(ctx context.Context, job *nightshift.Job[CountAllArgs]) (any, error) {
		children := make([]nightshift.EnqueueParams, len(job.Args.Files))
		for i, f := range job.Args.Files {
			children[i] = nightshift.EnqueueParams{Args: CountWordsArgs{File: f}}
		}
		// A retried parent derives the same batch id and resumes instead of starting twice.
		return nightshift.StartBatch(ctx, nightshift.BatchParams{
			Children:      children,
			Finalizer:     &nightshift.EnqueueParams{Args: TotalWordsArgs{}},
			FailurePolicy: nightshift.FinalizeAlways,
			Priority:      nightshift.PriorityLow,
		})
	}, nil)
	nightshift.AddWorkerFunc(reg, func(ctx context.Context, job *nightshift.Job[CountWordsArgs]) (any, error) {
		return 42, nil // count the words of job.Args.File
	}, nil)
	nightshift.AddWorkerFunc(reg, func(ctx context.Context, job *nightshift.Job[TotalWordsArgs]) (any, error) {
		children, err := nightshift.BatchChildren(ctx, job.BatchID)
		if err != nil {
			return nil, err
		}
		total, failed := 0, 0
		for i, c := range children {
			if c.State != record.StateSucceeded {
				failed++
				continue
			}
			var n int
			if err := json.Unmarshal(c.Result, &n); err != nil {
				return nil, err
			}
			total += n
			job.Progress(ctx, float64(i+1)/float64(len(children)), fmt.Sprintf("%d of %d files", i+1, len(children)))
		}
		return map[string]int{"words": total, "failed_files": failed}, nil
	}, nil)
	app, err := nightshifttest.NewApp(reg, nil)
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	parent, err := app.Client.Enqueue(ctx, CountAllArgs{Files: []string{"a.txt", "b.txt", "c.txt"}}, nil)
	if err != nil {
		panic(err)
	}
	if _, err := app.Drain(ctx); err != nil { // the parent, its three children, then the finalizer
		panic(err)
	}
	// The parent's result says where the batch went; the finalizer's holds the total.
	var batch nightshift.BatchInfo
	if err := app.Client.Result(ctx, parent.JobID, &batch); err != nil {
		panic(err)
	}
	fmt.Println(batch.Total, batch.State)
	st, err := app.Client.Status(ctx, batch.FinalizerJobID)
	if err != nil {
		panic(err)
	}
	fmt.Println(st.Kind, st.State, string(st.Result.JSON), st.Progress.Message)
	// Output:
	// 3 running
	// total_words succeeded {"failed_files":0,"words":126} 3 of 3 files
}

// Unique jobs: while a job with the dedupe key is pending or running, another enqueue with
// the key is refused and names the job holding it.
func ExampleDuplicateJobError() {
	reg := nightshift.NewRegistry()
	nightshift.AddWorkerFunc(reg, func(ctx context.Context, job *nightshift.Job[ReportArgs]) (any, error) {
		return "report for " + job.Args.Month, nil
	}, nil)
	app, err := nightshifttest.NewApp(reg, nil)
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	enqueue := func(id string) error {
		_, err := app.Client.Enqueue(ctx, ReportArgs{Month: "2026-11"}, &nightshift.EnqueueOptions{JobID: id, DedupeKey: "report:2026-11"})
		return err
	}
	if err := enqueue("report-1"); err != nil {
		panic(err)
	}
	err = enqueue("report-2")
	var dup *nightshift.DuplicateJobError
	if errors.Is(err, nightshift.ErrDuplicate) && errors.As(err, &dup) {
		fmt.Println("already queued as", dup.JobID)
	}

	// Once the job ended, the key is free again.
	if _, err := app.Drain(ctx); err != nil {
		panic(err)
	}
	fmt.Println(enqueue("report-3"))
	if _, err := app.Drain(ctx); err != nil {
		panic(err)
	}
	for _, id := range []string{"report-1", "report-3"} {
		st, err := app.Client.Status(ctx, id)
		if err != nil {
			panic(err)
		}
		fmt.Println(id, st.State, string(st.Result.JSON))
	}
	// Output:
	// already queued as report-1
	// <nil>
	// report-1 succeeded "report for 2026-11"
	// report-3 succeeded "report for 2026-11"
}

// ReportArgs build a monthly report; one at a time per month.
type ReportArgs struct {
	Month string `json:"month"`
}

// Kind implements nightshift.JobArgs.
func (ReportArgs) Kind() string { return "report" }
