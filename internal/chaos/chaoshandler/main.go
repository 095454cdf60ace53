// Command chaoshandler is the job handler of the crash-storm tests (package chaos): the
// real nightshift handler (nightshift.NewApp, no features) with its kinds: chaos.work,
// whose runs are recorded in $E2E_DIR (testenv.EnvRunsDir) and whose result is a function
// of its arguments (chaos.Expected), chaos.steps, a job that checkpoints every step
// (chaos.Steps), and chaos.wfstep, a workflow step (chaos.WorkflowStep). It runs two
// ways, like a user's handler:
//
//	chaoshandler                  the Functions custom handler (started by a host)
//	chaoshandler worker [flags]   a standalone worker (package worker, the same flags)
//
// As a worker it receives messages with the visibility in $NIGHTSHIFT_CHAOS_RECEIVE_VISIBILITY
// (chaos.EnvReceiveVisibility) when set, so the messages of a SIGKILLed worker reappear
// within the storm.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/internal/chaos"
	"github.com/nightshift-jobs/nightshift/internal/testenv"
	"github.com/nightshift-jobs/nightshift/worker"
)

func newApp() (*nightshift.App, error) {
	log := slog.New(slog.NewJSONHandler(os.Stdout, &slog.HandlerOptions{Level: slog.LevelWarn}))
	dir := os.Getenv(testenv.EnvRunsDir)
	reg := nightshift.NewRegistry()
	nightshift.AddWorkerFunc(reg, func(ctx context.Context, job *nightshift.Job[chaos.Args]) (any, error) {
		return chaos.Work(ctx, dir, job.ID, job.Args)
	}, nil)
	nightshift.AddWorkerFunc(reg, func(ctx context.Context, job *nightshift.Job[chaos.StepsArgs]) (any, error) {
		return chaos.Steps(ctx, dir, job.ID, job.Args)
	}, nil)
	nightshift.AddWorkerFunc(reg, func(ctx context.Context, job *nightshift.Job[chaos.WorkflowStepArgs]) (any, error) {
		return chaos.WorkflowStep(ctx, dir, job.ID, job.Args)
	}, nil)
	// Checkpoints (chaos.steps) are written at most every 100 ms: each step's is written
	// at once.
	return nightshift.NewApp(reg, nightshift.Config{Logger: log, Handler: nightshift.HandlerOptions{ProgressInterval: 100 * time.Millisecond}})
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if len(os.Args) > 1 && os.Args[1] == "worker" {
		context.AfterFunc(ctx, stop) // the first signal drains, a second one stops at once
		code := runWorker(ctx, os.Args[2:])
		stop()
		os.Exit(code)
	}
	app, err := newApp()
	if err == nil {
		err = app.Serve(ctx)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaoshandler:", err)
		os.Exit(1)
	}
}

// runWorker is worker.Main with one option more: worker.Main takes its options from the
// flags and settings only, and the receive visibility (the host's 10 min) has neither,
// so this parses the same flags (worker.ParseArgs) and runs worker.Run with the storm's
// visibility. Without chaos.EnvReceiveVisibility it is worker.Main.
func runWorker(ctx context.Context, args []string) int {
	v := os.Getenv(chaos.EnvReceiveVisibility)
	if v == "" {
		return worker.Main(ctx, args, newApp)
	}
	vis, err := time.ParseDuration(v)
	if err != nil || vis <= 0 {
		fmt.Fprintf(os.Stderr, "chaoshandler worker: %s=%q is not a positive duration\n", chaos.EnvReceiveVisibility, v)
		return 1
	}
	opts, err := worker.ParseArgs(args, os.Getenv, os.Stdout)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err == nil {
		opts.ReceiveVisibility = vis
		var app *nightshift.App
		if app, err = newApp(); err == nil {
			err = worker.Run(ctx, app, opts)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaoshandler worker:", err)
		return 1
	}
	return 0
}
