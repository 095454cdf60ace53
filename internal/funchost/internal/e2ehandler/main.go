// Command e2ehandler is a nightshift custom handler for the local host's end-to-end tests
// and benchmark: the real nightshift handler code (nightshift.Serve) with test job kinds,
// plus a "Tick" timer function that enqueues one e2e.noop job per occurrence.
//
// Every run of a job appends a line to $E2E_DIR/<job id> (when E2E_DIR is set), so tests
// can count how often each job ran.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/envelope"
	"github.com/nightshift-jobs/nightshift/hostproto"
	"github.com/nightshift-jobs/nightshift/internal/testenv"
	"github.com/nightshift-jobs/nightshift/storage"
)

// NoopArgs does nothing and succeeds.
type NoopArgs struct {
	N int `json:"n"`
}

// Kind implements nightshift.JobArgs.
func (NoopArgs) Kind() string { return "e2e.noop" }

// FailArgs always fails with a retryable error.
type FailArgs struct{}

// Kind implements nightshift.JobArgs.
func (FailArgs) Kind() string { return "e2e.fail" }

// SleepArgs sleeps MS milliseconds and succeeds.
type SleepArgs struct {
	MS int `json:"ms"`
}

// Kind implements nightshift.JobArgs.
func (SleepArgs) Kind() string { return "e2e.sleep" }

func mark(id string) { testenv.RecordRun(os.Getenv(testenv.EnvRunsDir), id) }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	log := slog.New(slog.NewJSONHandler(os.Stdout, &slog.HandlerOptions{Level: slog.LevelWarn}))
	reg := nightshift.NewRegistry()
	nightshift.AddWorkerFunc(reg, func(ctx context.Context, job *nightshift.Job[NoopArgs]) (any, error) {
		mark(job.ID)
		return map[string]int{"n": job.Args.N}, nil
	}, nil)
	nightshift.AddWorkerFunc(reg, func(ctx context.Context, job *nightshift.Job[FailArgs]) (any, error) {
		mark(job.ID)
		return nil, errors.New("e2e.fail always fails")
	}, &nightshift.WorkerOptions{MaxAttempts: 3, Backoff: nightshift.ConstantBackoff(time.Second)})
	nightshift.AddWorkerFunc(reg, func(ctx context.Context, job *nightshift.Job[SleepArgs]) (any, error) {
		mark(job.ID)
		select {
		case <-time.After(time.Duration(job.Args.MS) * time.Millisecond):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return map[string]int{"slept": job.Args.MS}, nil
	}, nil)
	err := nightshift.Serve(ctx, reg, &nightshift.ServeOptions{
		Logger: log,
		Setup: func(h *nightshift.Handler, store *storage.Clients) error {
			client := nightshift.NewClient(store, nil)
			h.Handle("Tick", func(ctx context.Context, inv *nightshift.Invocation) (*hostproto.InvokeResponse, error) {
				ti, err := inv.Request.Timer("myTimer")
				if err != nil {
					return nil, err
				}
				at := time.Now()
				if ti.ScheduleStatus != nil {
					at = ti.ScheduleStatus.Next
				}
				// One job per occurrence: a redelivered or duplicate fire maps to the same id.
				id := envelope.DerivedJobID(at, "tick")
				_, err = client.Enqueue(ctx, NoopArgs{}, &nightshift.EnqueueOptions{JobID: id})
				if errors.Is(err, nightshift.ErrJobExists) {
					err = nil
				}
				return &hostproto.InvokeResponse{}, err
			})
			return nil
		},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2ehandler:", err)
		os.Exit(1)
	}
}
