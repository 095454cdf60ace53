package nightshifttest_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/nightshifttest"
	"github.com/nightshift-jobs/nightshift/record"
)

// resizeRegistry registers the README's resize worker (readme_test.go) with a failure
// for the first flaky attempts and no backoff, so that one Drain sees the retries.
func resizeRegistry(flaky *int) *nightshift.Registry {
	reg := nightshift.NewRegistry()
	nightshift.AddWorkerFunc(reg, func(ctx context.Context, job *nightshift.Job[ResizeArgs]) (any, error) {
		if job.Args.Width <= 0 {
			return nil, nightshift.Permanentf("width must be positive") // no retries
		}
		if *flaky > 0 {
			*flaky--
			return nil, errors.New("blob service busy")
		}
		job.Logger.Info("resizing", "blob", job.Args.Blob)
		return map[string]string{"thumbnail": job.Args.Blob + ".thumb"}, nil
	}, &nightshift.WorkerOptions{Timeout: time.Minute, MaxAttempts: 5, Backoff: nightshift.ConstantBackoff(0)})
	return reg
}

// TestAppRetriesDeadLettersAndReplays runs the README's resize job (made flaky) end to
// end on the in-memory app: enqueue with the client, drain the queues as the host would,
// read status and result; a retried attempt, a permanent failure that ends as a dead
// letter, and its replay. TestREADMEExample runs the README's code as written.
func TestAppRetriesDeadLettersAndReplays(t *testing.T) {
	flaky := 1
	app, err := nightshifttest.NewApp(resizeRegistry(&flaky), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	ok, err := app.Client.Enqueue(ctx, ResizeArgs{Blob: "cat.png", Width: 64}, nil)
	if err != nil {
		t.Fatal(err)
	}
	bad, err := app.Client.Enqueue(ctx, ResizeArgs{Blob: "dog.png"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	n, err := app.Drain(ctx)
	if err != nil || n != 4 { // ok twice (one retry), bad once, its poison message once
		t.Fatalf("drained %d deliveries, %v; want 4", n, err)
	}
	st, err := app.Client.Status(ctx, ok.JobID)
	if err != nil || st.State != record.StateSucceeded || st.Attempt != 2 || len(st.Errors) != 1 {
		t.Fatalf("status %+v %v", st, err)
	}
	var res map[string]string
	if json.Unmarshal(st.Result.JSON, &res) != nil || res["thumbnail"] != "cat.png.thumb" {
		t.Errorf("result %s", st.Result.JSON)
	}
	dl, err := app.Client.DeadLetter(ctx, bad.JobID)
	if err != nil || dl.Reason != record.ReasonPermanentError {
		t.Fatalf("dead letter %+v %v", dl, err)
	}
	if _, err := app.Client.Replay(ctx, bad.JobID); err != nil {
		t.Fatal(err)
	}
	if _, err := app.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	if st, err := app.Client.Status(ctx, bad.JobID); err != nil || st.State != record.StateDead || st.Replay != 1 {
		t.Fatalf("replayed status %+v %v", st, err)
	}
}

// An in-memory app runs the README's example job end to end: no Azurite, no network.
func ExampleNewApp() {
	app, err := nightshifttest.NewApp(readmeRegistry(), nil)
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	res, err := app.Client.Enqueue(ctx, ResizeArgs{Blob: "cat.png", Width: 64}, nil)
	if err != nil {
		panic(err)
	}
	if _, err := app.Drain(ctx); err != nil {
		panic(err)
	}
	st, _ := app.Client.Status(ctx, res.JobID)
	fmt.Println(st.State, string(st.Result.JSON))
	// Output: succeeded {"thumbnail":"cat.png.thumb"}
}
