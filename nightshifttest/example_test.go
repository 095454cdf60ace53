package nightshifttest_test

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/nightshifttest"
	"github.com/nightshift-jobs/nightshift/record"
)

// ImportArgs are the args of an application's "import_rows" kind.
type ImportArgs struct {
	Rows   []string          `json:"rows"`
	APIKey nightshift.Secret `json:"api_key"`
}

// Kind implements nightshift.JobArgs.
func (ImportArgs) Kind() string { return "import_rows" }

// importOptions are the options the application registers import_rows with.
var importOptions = &nightshift.WorkerOptions{MaxAttempts: 3, Backoff: nightshift.ConstantBackoff(30 * time.Second)}

// ImportWorker is the application's worker under test.
type ImportWorker struct{}

// Work imports the rows, reporting progress after each.
func (ImportWorker) Work(ctx context.Context, job *nightshift.Job[ImportArgs]) (any, error) {
	if len(job.Args.Rows) == 0 {
		return nil, nightshift.Permanentf("import_rows: no rows")
	}
	job.Logger.Info("importing", "rows", len(job.Args.Rows), "api_key", job.Args.APIKey)
	for i, row := range job.Args.Rows {
		if strings.TrimSpace(row) == "" {
			return nil, fmt.Errorf("row %d is blank", i+1)
		}
		job.Progress(ctx, float64(i+1)/float64(len(job.Args.Rows)), fmt.Sprintf("%d of %d rows", i+1, len(job.Args.Rows)))
	}
	return map[string]int{"imported": len(job.Args.Rows)}, nil
}

// A test runs one attempt of its worker and checks the result, the captured log (the
// Secret is redacted, as in the job's status) and the progress reports. In a test, pass
// t.Context() and report with t.Errorf instead of printing.
func ExampleWork() {
	ctx := context.Background()
	res, err := nightshifttest.Work(ctx, ImportWorker{}, ImportArgs{Rows: []string{"a", "b"}, APIKey: "key-123"}, nil)
	if err != nil {
		panic(err) // the test could not run (args that do not encode, an invalid kind)
	}
	fmt.Println(res.Outcome, string(res.JSON))
	for _, line := range res.Logs {
		fmt.Println(line)
	}
	for _, p := range res.Progress {
		fmt.Println(p.Fraction, p.Message)
	}
	// Output:
	// succeeded {"imported":2}
	// INFO importing rows=2 api_key=[redacted]
	// 0.5 1 of 2 rows
	// 1 2 of 2 rows
}

// A Permanent error makes the job dead at once; any other error is retried with the
// kind's backoff until its last attempt.
func ExampleWork_errors() {
	ctx := context.Background()
	opts := &nightshifttest.WorkOptions{Worker: importOptions}
	res, _ := nightshifttest.Work(ctx, ImportWorker{}, ImportArgs{}, opts)
	fmt.Println(res.Class, res.Outcome, res.DeadReason, res.Err)

	res, _ = nightshifttest.Work(ctx, ImportWorker{}, ImportArgs{Rows: []string{"a", " "}}, opts)
	fmt.Println(res.Class, res.Outcome, res.RetryIn, res.Err)
	fmt.Println(res.Progress)

	// The same failure on the last of the kind's 3 attempts.
	res, _ = nightshifttest.Work(ctx, ImportWorker{}, ImportArgs{Rows: []string{" "}}, &nightshifttest.WorkOptions{Worker: importOptions, Attempt: 3})
	fmt.Println(res.Class, res.Outcome, res.DeadReason)
	// Output:
	// permanent dead permanent_error permanent: import_rows: no rows
	// retryable retrying 30s row 2 is blank
	// [{0.5 1 of 2 rows}]
	// retryable dead attempts_exhausted
}

// Run tests a kind of the application's own registry with the args as raw JSON, as a
// producer in another language sends them: a field of the wrong type fails the attempt
// permanently, as it would in the handler.
func ExampleRun() {
	reg := nightshift.NewRegistry()
	nightshift.AddWorker(reg, ImportWorker{}, importOptions)

	ctx := context.Background()
	res, err := nightshifttest.Run(ctx, reg, "import_rows", []byte(`{"rows":["a"],"api_key":"key-123"}`), nil)
	if err != nil {
		panic(err)
	}
	fmt.Println(res.Outcome, string(res.JSON))

	res, err = nightshifttest.Run(ctx, reg, "import_rows", []byte(`{"rows":"a"}`), nil)
	if err != nil {
		panic(err)
	}
	fmt.Println(res.Class, res.Outcome)
	fmt.Println(res.LastError)
	// Output:
	// succeeded {"imported":1}
	// permanent dead
	// permanent: args do not decode into nightshifttest_test.ImportArgs: json: cannot unmarshal string into Go struct field ImportArgs.rows of type []string
}

// printTB stands in for a test's *testing.T in these examples: it prints what would fail
// the test. In a test, pass t.
type printTB struct{}

func (printTB) Helper() {}

func (printTB) Fatalf(format string, args ...any) { fmt.Printf("FAIL "+format+"\n", args...) }

// NotifyArgs are the args of a job that import_rows enqueues when it is done.
type NotifyArgs struct {
	Message string `json:"message"`
}

// Kind implements nightshift.JobArgs.
func (NotifyArgs) Kind() string { return "notify" }

// importThenNotify registers import_rows, which enqueues a notify job when it is done.
func importThenNotify() *nightshift.Registry {
	reg := nightshift.NewRegistry()
	nightshift.AddWorkerFunc(reg, func(ctx context.Context, job *nightshift.Job[ImportArgs]) (any, error) {
		res, err := ImportWorker{}.Work(ctx, job)
		if err != nil {
			return nil, err
		}
		msg := fmt.Sprintf("imported %d rows", len(job.Args.Rows))
		if _, err := nightshift.JobClient(ctx).Enqueue(ctx, NotifyArgs{Message: msg}, nil); err != nil {
			return nil, err
		}
		return res, nil
	}, importOptions)
	nightshift.AddWorkerFunc(reg, func(ctx context.Context, job *nightshift.Job[NotifyArgs]) (any, error) {
		return "sent", nil
	}, nil)
	return reg
}

// The Require helpers assert what an in-memory app holds after a Drain, in the style of
// River's rivertest: a job of a kind was enqueued (here by another job), with these
// args, and it succeeded. A helper that fails calls tb.Fatalf and returns nil.
func ExampleRequireEnqueued() {
	var t printTB // in a test: the *testing.T
	app, err := nightshifttest.NewApp(importThenNotify(), nil)
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	if _, err := app.Client.Enqueue(ctx, ImportArgs{Rows: []string{"a", "b"}}, nil); err != nil {
		panic(err)
	}
	if _, err := app.Drain(ctx); err != nil {
		panic(err)
	}

	st := nightshifttest.RequireEnqueued(ctx, t, app, "notify", &nightshifttest.RequireOptions{Args: NotifyArgs{Message: "imported 2 rows"}})
	st = nightshifttest.RequireSucceeded(ctx, t, app, st.JobID)
	fmt.Println(st.Kind, st.State, string(st.Result.JSON))
	nightshifttest.RequireEnqueuedN(ctx, t, app, "import_rows", 1, &nightshifttest.RequireOptions{State: record.StateSucceeded})
	nightshifttest.RequireNotEnqueued(ctx, t, app, "import_rows", &nightshifttest.RequireOptions{State: record.StateDead})

	// What a failing assertion reports.
	nightshifttest.RequireEnqueued(ctx, t, app, "notify", &nightshifttest.RequireOptions{Args: NotifyArgs{Message: "imported 3 rows"}})
	// Output:
	// notify succeeded "sent"
	// FAIL nightshifttest: want 1 job(s) of kind "notify" with args {"message":"imported 3 rows"}, found 0; the app holds import_rows succeeded, notify succeeded
}

// RequireDied returns the dead-letter record of a job that is dead: why, and every failed
// attempt. A job that keeps failing retries with its kind's backoff, so the test gives
// the kind no delay to see its end in one Drain.
func ExampleRequireDied() {
	var t printTB // in a test: the *testing.T
	reg := nightshift.NewRegistry()
	nightshift.AddWorker(reg, ImportWorker{}, &nightshift.WorkerOptions{MaxAttempts: 2, Backoff: nightshift.ConstantBackoff(0)})
	app, err := nightshifttest.NewApp(reg, nil)
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	blank, err := app.Client.Enqueue(ctx, ImportArgs{Rows: []string{"a", " "}}, nil)
	if err != nil {
		panic(err)
	}
	empty, err := app.Client.Enqueue(ctx, ImportArgs{}, nil)
	if err != nil {
		panic(err)
	}
	if _, err := app.Drain(ctx); err != nil {
		panic(err)
	}
	for _, id := range []string{blank.JobID, empty.JobID} {
		dl := nightshifttest.RequireDied(ctx, t, app, id)
		fmt.Println(dl.Reason, len(dl.Errors), dl.Detail)
	}
	// Output:
	// attempts_exhausted 2 row 2 is blank
	// permanent_error 1 permanent: import_rows: no rows
}
