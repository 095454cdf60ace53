// Command testhandler is the nightshift handler the scheduling end-to-end tests run under
// the local Functions host: nightshift.Serve with schedule.Setup (maintenance, sweeper) and
// a few test recurring jobs. Every run of a job appends a line to $E2E_DIR/<job id>, so
// tests can count runs. $SCHEDTEST_LOOKAHEAD (a Go duration) sets the sweeper look-ahead.
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
	"github.com/nightshift-jobs/nightshift/internal/testenv"
	"github.com/nightshift-jobs/nightshift/schedule"
	"github.com/nightshift-jobs/nightshift/schedule/internal/schedtest"
)

// envLookahead names the variable holding the sweeper look-ahead (test only).
const envLookahead = "SCHEDTEST_LOOKAHEAD"

func mark(id string) { testenv.RecordRun(os.Getenv(testenv.EnvRunsDir), id) }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	log := slog.New(slog.NewJSONHandler(os.Stdout, &slog.HandlerOptions{Level: slog.LevelWarn}))
	reg := nightshift.NewRegistry()
	nightshift.AddWorkerFunc(reg, func(ctx context.Context, job *nightshift.Job[schedtest.NoopArgs]) (any, error) {
		mark(job.ID)
		return map[string]string{"ran": job.ID}, nil
	}, nil)
	nightshift.AddWorkerFunc(reg, func(ctx context.Context, job *nightshift.Job[schedtest.FlakyArgs]) (any, error) {
		mark(job.ID)
		if job.Attempt == 1 {
			return nil, errors.New("first attempt fails")
		}
		return nil, nil
	}, &nightshift.WorkerOptions{MaxAttempts: 3, Backoff: nightshift.ConstantBackoff(time.Second)})
	var lookahead time.Duration
	if v := os.Getenv(envLookahead); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			fmt.Fprintln(os.Stderr, "testhandler:", envLookahead, err)
			os.Exit(2)
		}
		lookahead = d
	}
	err := nightshift.Serve(ctx, reg, &nightshift.ServeOptions{
		Logger: log,
		Setup:  schedule.Setup(reg, &schedule.Options{Recurring: schedtest.Declarations(), Logger: log, Lookahead: lookahead}),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "testhandler:", err)
		os.Exit(1)
	}
}
