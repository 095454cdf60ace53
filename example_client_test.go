package nightshift_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/envelope"
	"github.com/nightshift-jobs/nightshift/nightshifttest"
	"github.com/nightshift-jobs/nightshift/storage"
)

// ResizeArgs are the args of an example job kind.
type ResizeArgs struct {
	Blob  string `json:"blob"`
	Width int    `json:"width"`
}

// Kind implements nightshift.JobArgs.
func (ResizeArgs) Kind() string { return "resize" }

// A client reads the same storage settings as the handler (AzureWebJobsStorage, or the
// identity-based AzureWebJobsStorage__* settings, and NIGHTSHIFT_NAME_PREFIX).
func ExampleNewClientFromEnv() {
	client, err := nightshift.NewClientFromEnv(os.Getenv)
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	res, err := client.Enqueue(ctx, ResizeArgs{Blob: "in/cat.png", Width: 320}, nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("enqueued", res.JobID)
}

// Enqueue a job, wait for it with a deadline, and read its result.
func ExampleClient_Wait() {
	client, err := nightshift.NewClientFromEnv(os.Getenv)
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := client.Enqueue(ctx, ResizeArgs{Blob: "in/cat.png", Width: 320}, &nightshift.EnqueueOptions{
		MaxAttempts: 3,
		Timeout:     time.Minute,
		Meta:        map[string]string{"request_id": "r-123"},
	})
	if err != nil {
		log.Fatal(err)
	}
	st, err := client.Wait(ctx, res.JobID, &nightshift.WaitOptions{Progress: func(st *storage.Status) {
		if st != nil {
			log.Printf("job %s: %s (attempt %d)", st.JobID, st.State, st.Attempt)
		}
	}})
	if err != nil {
		log.Fatal(err) // the deadline passed; the job may still finish later
	}
	if st.State != storage.StateSucceeded {
		log.Fatalf("job %s ended %s: %s", st.JobID, st.State, st.LastError)
	}
	var out struct {
		Thumb string `json:"thumb"`
	}
	if err := client.Result(ctx, res.JobID, &out); err != nil {
		log.Fatal(err)
	}
	fmt.Println(out.Thumb)
}

// Delay a job, ask for a signed webhook when it ends, and cancel it.
func ExampleClient_Cancel() {
	client, err := nightshift.NewClientFromEnv(os.Getenv)
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	res, err := client.Enqueue(ctx, ResizeArgs{Blob: "in/dog.png"}, &nightshift.EnqueueOptions{
		RunIn:       30 * time.Minute,
		CallbackURL: "https://example.com/hooks/nightshift",
	})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := client.Cancel(ctx, res.JobID); errors.Is(err, nightshift.ErrTerminal) {
		fmt.Println("too late: the job already ended")
	} else if err != nil {
		log.Fatal(err)
	}
}

// Replay every dead job of a kind, at most 5 per second.
func ExampleClient_Replay() {
	client, err := nightshift.NewClientFromEnv(os.Getenv)
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	dead, err := client.DeadLetters(ctx)
	if err != nil {
		log.Fatal(err)
	}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for _, d := range dead {
		if d.Kind != "resize" || d.Envelope == nil {
			continue
		}
		res, err := client.Replay(ctx, d.DeadID)
		if err != nil {
			log.Printf("replay %s: %v", d.DeadID, err)
			continue
		}
		fmt.Printf("replayed %s as life %d\n", res.JobID, res.Replay)
		<-tick.C
	}
}

// EnqueueMany sends jobs concurrently and reports an error per job.
func ExampleClient_EnqueueMany() {
	client, err := nightshift.NewClientFromEnv(os.Getenv)
	if err != nil {
		log.Fatal(err)
	}
	var batch []nightshift.EnqueueParams
	for _, blob := range []string{"in/1.png", "in/2.png", "in/3.png"} {
		batch = append(batch, nightshift.EnqueueParams{Args: ResizeArgs{Blob: blob, Width: 320}})
	}
	// Untyped: a kind implemented in another app, with raw JSON args.
	batch = append(batch, nightshift.EnqueueParams{Kind: "http_fetch", RawArgs: json.RawMessage(`{"url":"https://example.com"}`)})
	results, err := client.EnqueueMany(context.Background(), batch)
	if err != nil {
		log.Fatal(err)
	}
	for i, r := range results {
		if r.Err != nil {
			log.Printf("job %d: %v", i, r.Err)
		}
	}
}

// Options and args are validated before anything is sent; errors name the field.
func ExampleClient_EnqueueRaw_validation() {
	store, err := storage.FromEnv(func(k string) string {
		if k == storage.SettingStorage {
			return "UseDevelopmentStorage=true"
		}
		return ""
	}, nil)
	if err != nil {
		log.Fatal(err)
	}
	client := nightshift.NewClient(store, nil)
	ctx := context.Background()

	_, err = client.EnqueueRaw(ctx, "resize", json.RawMessage(`{"blob":`), nil)
	fmt.Println(err)

	_, err = client.Enqueue(ctx, ResizeArgs{}, &nightshift.EnqueueOptions{RunIn: -time.Minute})
	var fe *envelope.FieldError
	if errors.As(err, &fe) {
		fmt.Println(fe.Field)
	}
	// Output:
	// nightshift: enqueue resize: envelope field "args": is not valid JSON
	// run_at
}

// Envelope shows the message Enqueue would send, without sending it.
func ExampleClient_Envelope() {
	store, err := storage.FromEnv(func(k string) string {
		if k == storage.SettingStorage {
			return "UseDevelopmentStorage=true"
		}
		return ""
	}, nil)
	if err != nil {
		log.Fatal(err)
	}
	client := nightshift.NewClient(store, nil)
	env, queue, delay, err := client.Envelope("resize", json.RawMessage(`{"blob": "in/cat.png"}`), &nightshift.EnqueueOptions{
		JobID: "resize-cat", MaxAttempts: 3, DedupeKey: "cat",
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(env.JobID, env.Kind, string(env.Args), env.MaxAttempts, env.DedupeKey, queue, delay)

	// The handler would run it like this (here with nightshifttest, without storage).
	reg := nightshift.NewRegistry()
	nightshift.AddWorkerFunc(reg, func(ctx context.Context, job *nightshift.Job[ResizeArgs]) (any, error) {
		return map[string]any{"thumb": job.Args.Blob + ".thumb", "last_attempt": job.Attempt == job.MaxAttempts}, nil
	}, nil)
	res, err := nightshifttest.Run(context.Background(), reg, env.Kind, env.Args,
		&nightshifttest.WorkOptions{JobID: env.JobID, MaxAttempts: env.MaxAttempts, Meta: env.Meta})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(res.Outcome, string(res.JSON))
	// Output:
	// resize-cat resize {"blob":"in/cat.png"} 3 cat jobs 0s
	// succeeded {"last_attempt":false,"thumb":"in/cat.png.thumb"}
}
