package nightshift_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/envelope"
	"github.com/nightshift-jobs/nightshift/nightshifttest"
)

// SendEmailArgs are the arguments of the "send_email" job kind.
type SendEmailArgs struct {
	To      string `json:"to"`
	Subject string `json:"subject"`
}

// Kind names the job kind; producers put it in the envelope's "kind" field.
func (SendEmailArgs) Kind() string { return "send_email" }

// sendEmail is the worker of send_email.
func sendEmail(ctx context.Context, job *nightshift.Job[SendEmailArgs]) (any, error) {
	if job.Args.To == "" {
		// Retrying cannot fix a missing address: fail for good.
		return nil, nightshift.Permanentf("send_email: args.to is empty")
	}
	job.Logger.Info("sending", "to", job.Args.To, "attempt", job.Attempt)
	return map[string]string{"message_id": "m-" + job.ID}, nil
}

// A job kind is an args type plus a worker, registered on a Registry with per-kind
// options. Here the registry is served by an in-memory app (nightshifttest.NewApp): the
// real handler and queues, without Azure.
func ExampleAddWorkerFunc() {
	reg := nightshift.NewRegistry()
	nightshift.AddWorkerFunc(reg, sendEmail, &nightshift.WorkerOptions{
		Timeout:     30 * time.Second,
		MaxAttempts: 5,
		Backoff:     nightshift.ExponentialBackoff{Base: 10 * time.Second, Factor: 3, Max: time.Hour},
	})
	app, err := nightshifttest.NewApp(reg, nil)
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	_, err = app.Client.Enqueue(ctx, SendEmailArgs{To: "ann@example.com", Subject: "Welcome"}, &nightshift.EnqueueOptions{JobID: "welcome-42"})
	if err != nil {
		panic(err)
	}
	if _, err := app.Drain(ctx); err != nil {
		panic(err)
	}
	st, err := app.Client.Status(ctx, "welcome-42")
	if err != nil {
		panic(err)
	}
	fmt.Println(st.Kind, st.State, st.Attempt, st.MaxAttempts, string(st.Result.JSON))
	for _, l := range st.Logs {
		fmt.Println(l.Level, l.Message)
	}
	// Output:
	// send_email succeeded 1 5 {"message_id":"m-welcome-42"}
	// INFO sending to=ann@example.com attempt=1
}

// Errors are retried by default; Permanent marks the ones that must not be: the job is
// dead at once.
func ExamplePermanent() {
	res, err := nightshifttest.Work(context.Background(), nightshift.WorkFunc[SendEmailArgs](sendEmail), SendEmailArgs{Subject: "Welcome"}, nil)
	if err != nil {
		panic(err)
	}
	fmt.Println(res.Class, res.Outcome, res.DeadReason)
	fmt.Println(res.LastError)
	fmt.Println(nightshift.IsPermanent(res.Err))
	fmt.Println(nightshift.IsPermanent(errors.New("connection reset")))
	// Output:
	// permanent dead permanent_error
	// permanent: send_email: args.to is empty
	// true
	// false
}

// The delay before each retry comes from the kind's BackoffPolicy; the last attempt's
// failure makes the job dead.
func ExampleExponentialBackoff() {
	flaky := nightshift.WorkFunc[SendEmailArgs](func(ctx context.Context, job *nightshift.Job[SendEmailArgs]) (any, error) {
		return nil, errors.New("smtp: connection reset")
	})
	opts := &nightshift.WorkerOptions{
		MaxAttempts: 5,
		Backoff:     nightshift.ExponentialBackoff{Base: time.Second, Factor: 2, Max: 5 * time.Second},
	}
	for attempt := 1; attempt <= 5; attempt++ {
		res, err := nightshifttest.Work(context.Background(), flaky, SendEmailArgs{To: "ann@example.com"},
			&nightshifttest.WorkOptions{Attempt: attempt, Worker: opts})
		if err != nil {
			panic(err)
		}
		fmt.Println(attempt, res.Class, res.Outcome, res.RetryIn)
	}
	// Output:
	// 1 retryable retrying 1s
	// 2 retryable retrying 2s
	// 3 retryable retrying 4s
	// 4 retryable retrying 5s
	// 5 retryable dead 0s
}

// Any language can enqueue a job: the message is the envelope's JSON text, put on the
// jobs queue. The handler decodes its args into the kind's type and runs the worker.
func ExampleRegistry_envelope() {
	reg := nightshift.NewRegistry()
	nightshift.AddWorkerFunc(reg, sendEmail, nil)
	app, err := nightshifttest.NewApp(reg, nil)
	if err != nil {
		panic(err)
	}

	// The text a Python or Node.js producer puts on the queue.
	text := []byte(`{"job_id":"welcome-42","kind":"send_email","args":{"to":"ann@example.com","subject":"Welcome"},"meta":{"tenant":"acme"}}`)
	if _, err := envelope.Decode(text); err != nil {
		panic(err) // what the handler would dead-letter at once
	}
	ctx := context.Background()
	store := app.Storage()
	if _, err := store.Enqueue(ctx, store.Layout.JobsQueue(), text, 0, 0); err != nil {
		panic(err)
	}
	if _, err := app.Drain(ctx); err != nil {
		panic(err)
	}
	st, err := app.Client.Status(ctx, "welcome-42")
	if err != nil {
		panic(err)
	}
	fmt.Println(st.Kind, st.State, st.Meta["tenant"], string(st.Result.JSON))
	// Output: send_email succeeded acme {"message_id":"m-welcome-42"}
}
