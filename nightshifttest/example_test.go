package nightshifttest_test

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/nightshifttest"
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
