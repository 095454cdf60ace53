package nightshift_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/envelope"
)

// SendEmailArgs are the arguments of the "send_email" job kind.
type SendEmailArgs struct {
	To      string `json:"to"`
	Subject string `json:"subject"`
}

// Kind names the job kind; producers put it in the envelope's "kind" field.
func (SendEmailArgs) Kind() string { return "send_email" }

// A job kind is an args type plus a worker, registered on a Registry with per-kind options.
func ExampleAddWorkerFunc() {
	reg := nightshift.NewRegistry()
	nightshift.AddWorkerFunc(reg, func(ctx context.Context, job *nightshift.Job[SendEmailArgs]) (any, error) {
		if job.Args.To == "" {
			// Retrying cannot fix a missing address: fail for good.
			return nil, nightshift.Permanentf("send_email: args.to is empty")
		}
		job.Logger.Info("sending", "to", job.Args.To, "attempt", job.Attempt)
		return map[string]string{"message_id": "m-" + job.ID}, nil
	}, &nightshift.WorkerOptions{
		Timeout:     30 * time.Second,
		MaxAttempts: 5,
		Backoff:     nightshift.ExponentialBackoff{Base: 10 * time.Second, Factor: 3, Max: time.Hour},
	})
	fmt.Println(reg.Kinds())
	// Output: [send_email]
}

// Errors are retried by default; Permanent marks the ones that must not be.
func ExamplePermanent() {
	err := fmt.Errorf("charge card: %w", nightshift.Permanent(errors.New("card declined")))
	fmt.Println(nightshift.IsPermanent(err))
	fmt.Println(nightshift.IsPermanent(errors.New("connection reset")))
	// Output:
	// true
	// false
}

// The delay before each retry comes from the kind's BackoffPolicy.
func ExampleExponentialBackoff() {
	b := nightshift.ExponentialBackoff{Base: time.Second, Factor: 2, Max: 10 * time.Second}
	for attempt := 1; attempt <= 5; attempt++ {
		fmt.Println(attempt, b.NextDelay(attempt))
	}
	// Output:
	// 1 1s
	// 2 2s
	// 3 4s
	// 4 8s
	// 5 10s
}

// Any language can enqueue a job: the message is the envelope's JSON text.
func ExampleRegistry_envelope() {
	e := &envelope.Envelope{JobID: "welcome-42", Kind: SendEmailArgs{}.Kind(), Args: []byte(`{"to":"ann@example.com","subject":"Welcome"}`)}
	text, err := e.Encode()
	if err != nil {
		panic(err)
	}
	fmt.Println(string(text))
	// Output: {"job_id":"welcome-42","kind":"send_email","args":{"to":"ann@example.com","subject":"Welcome"}}
}
