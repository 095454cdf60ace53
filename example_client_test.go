package nightshift_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"slices"
	"strings"
	"time"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/envelope"
	"github.com/nightshift-jobs/nightshift/nightshifttest"
	"github.com/nightshift-jobs/nightshift/record"
)

// ResizeArgs are the args of an example job kind.
type ResizeArgs struct {
	Blob  string `json:"blob"`
	Width int    `json:"width"`
}

// Kind implements nightshift.JobArgs.
func (ResizeArgs) Kind() string { return "resize" }

// resizeApp serves a registry with the resize kind on an in-memory app
// (nightshifttest.NewApp): the real handler and queues, no Azure. A width that is not
// positive fails for good.
func resizeApp() *nightshifttest.App {
	reg := nightshift.NewRegistry()
	nightshift.AddWorkerFunc(reg, func(ctx context.Context, job *nightshift.Job[ResizeArgs]) (any, error) {
		if job.Args.Width <= 0 {
			return nil, nightshift.Permanentf("width must be positive")
		}
		return map[string]string{"thumb": job.Args.Blob + ".thumb"}, nil
	}, &nightshift.WorkerOptions{MaxAttempts: 5})
	app, err := nightshifttest.NewApp(reg, nil)
	if err != nil {
		log.Fatal(err)
	}
	return app
}

// A client enqueues on the storage the handler reads. In an application it is
// nightshift.NewClientFromEnv(os.Getenv), which reads the same settings as the handler
// (AzureWebJobsStorage, or the identity-based AzureWebJobsStorage__* settings, and
// NIGHTSHIFT_NAME_PREFIX); here it is built on an in-memory app's storage, whose Drain
// plays the Functions host.
func ExampleNewClient() {
	app := resizeApp()
	client := nightshift.NewClient(app.Storage(), nil)
	ctx := context.Background()
	res, err := client.Enqueue(ctx, ResizeArgs{Blob: "in/cat.png", Width: 320}, nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("enqueued", res.Kind, "on", res.Queue)
	if _, err := app.Drain(ctx); err != nil {
		log.Fatal(err)
	}
	st, err := client.Status(ctx, res.JobID)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(st.State, string(st.Result.JSON))
	// Output:
	// enqueued resize on jobs
	// succeeded {"thumb":"in/cat.png.thumb"}
}

// Enqueue a job, wait for it with a deadline, and read its result.
func ExampleClient_Wait() {
	app := resizeApp()
	client := app.Client
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
	if _, err := app.Drain(ctx); err != nil { // in production, the Functions host runs the job
		log.Fatal(err)
	}
	st, err := client.Wait(ctx, res.JobID, &nightshift.WaitOptions{Progress: func(st *record.Status) {
		if st != nil {
			fmt.Printf("%s (attempt %d of %d)\n", st.State, st.Attempt, st.MaxAttempts)
		}
	}})
	if err != nil {
		log.Fatal(err) // the deadline passed; the job may still finish later
	}
	if st.State != record.StateSucceeded {
		log.Fatalf("job %s ended %s: %s", st.JobID, st.State, st.LastError)
	}
	var out struct {
		Thumb string `json:"thumb"`
	}
	if err := client.Result(ctx, res.JobID, &out); err != nil {
		log.Fatal(err)
	}
	fmt.Println(out.Thumb, st.Meta["request_id"])
	// Output:
	// succeeded (attempt 1 of 3)
	// in/cat.png.thumb r-123
}

// Cancel a delayed job before it runs; a job that already ended cannot be cancelled.
func ExampleClient_Cancel() {
	app := resizeApp()
	client := app.Client
	ctx := context.Background()
	later, err := client.Enqueue(ctx, ResizeArgs{Blob: "in/dog.png", Width: 64}, &nightshift.EnqueueOptions{RunIn: 30 * time.Minute})
	if err != nil {
		log.Fatal(err)
	}
	now, err := client.Enqueue(ctx, ResizeArgs{Blob: "in/cat.png", Width: 64}, nil)
	if err != nil {
		log.Fatal(err)
	}
	if _, err := app.Drain(ctx); err != nil { // runs the job due now
		log.Fatal(err)
	}
	for _, id := range []string{later.JobID, now.JobID} {
		st, err := client.Cancel(ctx, id)
		if errors.Is(err, nightshift.ErrTerminal) {
			fmt.Println("too late: the job already ended", st.State)
		} else if err != nil {
			log.Fatal(err)
		} else {
			fmt.Println(st.State)
		}
	}
	// Output:
	// cancelled
	// too late: the job already ended succeeded
}

// Replay every dead job of a kind once the cause is fixed: each starts a new life with
// the same job id and args.
func ExampleClient_Replay() {
	broken := true // the resizer is misconfigured until the operator fixes it
	reg := nightshift.NewRegistry()
	nightshift.AddWorkerFunc(reg, func(ctx context.Context, job *nightshift.Job[ResizeArgs]) (any, error) {
		if broken {
			return nil, nightshift.Permanentf("resizer: no output container configured")
		}
		return map[string]string{"thumb": job.Args.Blob + ".thumb"}, nil
	}, nil)
	app, err := nightshifttest.NewApp(reg, nil)
	if err != nil {
		log.Fatal(err)
	}
	client := app.Client
	ctx := context.Background()
	for _, id := range []string{"resize-1", "resize-2"} {
		if _, err := client.Enqueue(ctx, ResizeArgs{Blob: "in/" + id + ".png", Width: 64}, &nightshift.EnqueueOptions{JobID: id}); err != nil {
			log.Fatal(err)
		}
	}
	if _, err := app.Drain(ctx); err != nil {
		log.Fatal(err)
	}

	broken = false
	dead, err := client.DeadLetters(ctx)
	if err != nil {
		log.Fatal(err)
	}
	slices.SortFunc(dead, func(a, b *record.DeadLetter) int { return strings.Compare(a.DeadID, b.DeadID) })
	for _, d := range dead {
		if d.Kind != "resize" || d.Envelope == nil {
			continue
		}
		// Against a large backlog, pace the replays (for example with a time.Ticker).
		res, err := client.Replay(ctx, d.DeadID)
		if err != nil {
			log.Printf("replay %s: %v", d.DeadID, err)
			continue
		}
		fmt.Printf("replayed %s (%s) as life %d\n", res.JobID, d.Detail, res.Replay)
	}
	if _, err := app.Drain(ctx); err != nil {
		log.Fatal(err)
	}
	for _, id := range []string{"resize-1", "resize-2"} {
		st, err := client.Status(ctx, id)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(id, st.State, st.Replay, string(st.Result.JSON))
	}
	// Output:
	// replayed resize-1 (permanent: resizer: no output container configured) as life 1
	// replayed resize-2 (permanent: resizer: no output container configured) as life 1
	// resize-1 succeeded 1 {"thumb":"in/resize-1.png.thumb"}
	// resize-2 succeeded 1 {"thumb":"in/resize-2.png.thumb"}
}

// EnqueueMany sends jobs concurrently and reports an error per job.
func ExampleClient_EnqueueMany() {
	app := resizeApp()
	client := app.Client
	ctx := context.Background()
	var batch []nightshift.EnqueueParams
	for _, blob := range []string{"in/1.png", "in/2.png", "in/3.png"} {
		batch = append(batch, nightshift.EnqueueParams{Args: ResizeArgs{Blob: blob, Width: 320}})
	}
	// Untyped, with raw JSON args: as for a kind implemented in another app.
	batch = append(batch, nightshift.EnqueueParams{Kind: "resize", RawArgs: json.RawMessage(`{"blob":"in/4.png","width":0}`)})
	// Refused before anything is sent: not JSON.
	batch = append(batch, nightshift.EnqueueParams{Kind: "resize", RawArgs: json.RawMessage(`{"blob":`)})
	results, err := client.EnqueueMany(ctx, batch)
	if err != nil {
		log.Fatal(err)
	}
	if _, err := app.Drain(ctx); err != nil {
		log.Fatal(err)
	}
	for i, r := range results {
		if r.Err != nil {
			fmt.Println(i, r.Err)
			continue
		}
		st, err := client.Status(ctx, r.Result.JobID)
		if err != nil {
			log.Fatal(err)
		}
		if st.LastError != "" {
			fmt.Println(i, st.State, st.LastError)
		} else {
			fmt.Println(i, st.State)
		}
	}
	// Output:
	// 0 succeeded
	// 1 succeeded
	// 2 succeeded
	// 3 dead permanent: width must be positive
	// 4 nightshift: enqueue resize: envelope field "args": is not valid JSON
}

// Options and args are validated before anything is sent; errors name the field.
func ExampleClient_EnqueueRaw_validation() {
	app := resizeApp()
	client := app.Client
	ctx := context.Background()

	_, err := client.EnqueueRaw(ctx, "resize", json.RawMessage(`{"blob":`), nil)
	fmt.Println(err)

	_, err = client.Enqueue(ctx, ResizeArgs{}, &nightshift.EnqueueOptions{RunIn: -time.Minute})
	var fe *envelope.FieldError
	if errors.As(err, &fe) {
		fmt.Println(fe.Field)
	}

	// Valid raw args are sent and run like typed ones.
	res, err := client.EnqueueRaw(ctx, "resize", json.RawMessage(`{"blob":"in/cat.png","width":64}`), nil)
	if err != nil {
		log.Fatal(err)
	}
	if _, err := app.Drain(ctx); err != nil {
		log.Fatal(err)
	}
	var out map[string]string
	if err := client.Result(ctx, res.JobID, &out); err != nil {
		log.Fatal(err)
	}
	fmt.Println(out["thumb"])
	// Output:
	// nightshift: enqueue resize: envelope field "args": is not valid JSON
	// run_at
	// in/cat.png.thumb
}

// Envelope shows the message Enqueue would send, without sending it.
func ExampleClient_Envelope() {
	reg := nightshift.NewRegistry()
	nightshift.AddWorkerFunc(reg, func(ctx context.Context, job *nightshift.Job[ResizeArgs]) (any, error) {
		return map[string]any{"thumb": job.Args.Blob + ".thumb", "last_attempt": job.Attempt == job.MaxAttempts}, nil
	}, nil)
	app, err := nightshifttest.NewApp(reg, nil)
	if err != nil {
		log.Fatal(err)
	}
	env, queue, delay, err := app.Client.Envelope("resize", json.RawMessage(`{"blob": "in/cat.png"}`), &nightshift.EnqueueOptions{
		JobID: "resize-cat", MaxAttempts: 3, DedupeKey: "cat",
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(env.JobID, env.Kind, string(env.Args), env.MaxAttempts, env.DedupeKey, queue, delay)

	// The handler would run it like this (here one attempt with nightshifttest.Run).
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
