// Command workerhandler is a nightshift handler for the worker tests and benchmark: one
// nightshift.App with test job kinds and a recurring job ("Tick", schedule setting
// NIGHTSHIFT_SCHEDULE_TICK), served three ways like a user's handler:
//
//	workerhandler                  the Functions custom handler (started by a host)
//	workerhandler worker [flags]   a standalone worker (package worker)
//	workerhandler functions DIR    writes the app's function.json files into DIR
//
// Every job run appends this process's pid to $E2E_DIR/<job id> (testenv.RecordRun).
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/internal/testenv"
	"github.com/nightshift-jobs/nightshift/schedule"
	"github.com/nightshift-jobs/nightshift/worker"
)

// NoopArgs succeeds with {"n": N}.
type NoopArgs struct {
	N int `json:"n"`
}

// Kind implements nightshift.JobArgs.
func (NoopArgs) Kind() string { return "test.noop" }

// FailArgs fails with a retryable error until its attempts run out.
type FailArgs struct{}

// Kind implements nightshift.JobArgs.
func (FailArgs) Kind() string { return "test.fail" }

// PermanentArgs fails at once with a permanent error.
type PermanentArgs struct{}

// Kind implements nightshift.JobArgs.
func (PermanentArgs) Kind() string { return "test.permanent" }

// BlockArgs waits until the file Release exists, then succeeds with {"released": true}
// (its context ending first fails the attempt). On start it creates Started.
type BlockArgs struct {
	Started string `json:"started"`
	Release string `json:"release"`
}

// Kind implements nightshift.JobArgs.
func (BlockArgs) Kind() string { return "test.block" }

func mark(id string) { testenv.RecordRun(os.Getenv(testenv.EnvRunsDir), id) }

func register(reg *nightshift.Registry) {
	nightshift.AddWorkerFunc(reg, func(ctx context.Context, job *nightshift.Job[NoopArgs]) (any, error) {
		mark(job.ID)
		job.Logger.Info("noop ran", "n", job.Args.N)
		return map[string]int{"n": job.Args.N}, nil
	}, nil)
	nightshift.AddWorkerFunc(reg, func(ctx context.Context, job *nightshift.Job[FailArgs]) (any, error) {
		mark(job.ID)
		return nil, errors.New("test.fail always fails")
	}, &nightshift.WorkerOptions{MaxAttempts: 2, Backoff: nightshift.ConstantBackoff(100 * time.Millisecond)})
	nightshift.AddWorkerFunc(reg, func(ctx context.Context, job *nightshift.Job[PermanentArgs]) (any, error) {
		mark(job.ID)
		return nil, nightshift.Permanent(errors.New("test.permanent refuses"))
	}, nil)
	nightshift.AddWorkerFunc(reg, func(ctx context.Context, job *nightshift.Job[BlockArgs]) (any, error) {
		mark(job.ID)
		if err := os.WriteFile(job.Args.Started, []byte(fmt.Sprint(os.Getpid())), 0o644); err != nil {
			return nil, err
		}
		for {
			if _, err := os.Stat(job.Args.Release); err == nil {
				return map[string]bool{"released": true}, nil
			}
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(20 * time.Millisecond):
			}
		}
	}, &nightshift.WorkerOptions{Timeout: 10 * time.Minute})
}

func newApp(log *slog.Logger) (*nightshift.App, error) {
	reg := nightshift.NewRegistry()
	register(reg)
	tick := schedule.Recurring{Name: "Tick", Schedule: "*/2 * * * * *", Args: NoopArgs{N: -1}}
	return nightshift.NewApp(reg, nightshift.Config{Logger: log,
		Features: []nightshift.Feature{schedule.Feature(&schedule.Options{Recurring: []schedule.Recurring{tick}, NoBuiltins: true})}})
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	log := slog.New(slog.NewJSONHandler(os.Stdout, nil))
	args := os.Args[1:]
	switch {
	case len(args) > 0 && args[0] == "worker":
		code := worker.Main(ctx, args[1:], func() (*nightshift.App, error) { return newApp(log) })
		stop()
		os.Exit(code)
	case len(args) == 2 && args[0] == "functions":
		if err := writeFunctions(args[1], log); err != nil {
			fmt.Fprintln(os.Stderr, "workerhandler:", err)
			os.Exit(1)
		}
		return
	}
	app, err := newApp(log)
	if err == nil {
		err = app.Serve(ctx)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "workerhandler:", err)
		os.Exit(1)
	}
}

func writeFunctions(dir string, log *slog.Logger) error {
	app, err := newApp(log)
	if err != nil {
		return err
	}
	files, err := app.FunctionFiles()
	if err != nil {
		return err
	}
	for rel, b := range files {
		p := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			return err
		}
	}
	return nil
}
