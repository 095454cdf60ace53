package nightshift_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/nightshifttest"
	"github.com/nightshift-jobs/nightshift/storage"
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
			if c.State != storage.StateSucceeded {
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
	fmt.Println(reg.Kinds())

	// A child runs on its own; the parent and the finalizer need a client on storage
	// (nightshifttest.WorkOptions.Client) for StartBatch and BatchChildren.
	res, err := nightshifttest.Run(context.Background(), reg, "count_words", []byte(`{"file":"a.txt"}`), nil)
	if err != nil {
		panic(err)
	}
	fmt.Println(res.Outcome, string(res.JSON))
	// Output:
	// [count_all count_words total_words]
	// succeeded 42
}

// Unique jobs: while a job with the dedupe key is pending or running, another enqueue with
// the key is refused and names the job holding it.
func ExampleDuplicateJobError() {
	err := fmt.Errorf("nightshift: enqueue report: %w", &nightshift.DuplicateJobError{Key: "report:2026-11", JobID: "01a2-holder"})
	var dup *nightshift.DuplicateJobError
	if errors.Is(err, nightshift.ErrDuplicate) && errors.As(err, &dup) {
		fmt.Println("already queued as", dup.JobID)
	}
	// Output: already queued as 01a2-holder
}
