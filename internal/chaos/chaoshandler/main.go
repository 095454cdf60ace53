// Command chaoshandler is the custom handler of the crash-storm test (package chaos): the
// real nightshift handler (nightshift.NewApp, no features) with one kind, chaos.work,
// whose runs are recorded in $E2E_DIR (testenv.EnvRunsDir) and whose result is a function
// of its arguments (chaos.Expected).
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/internal/chaos"
	"github.com/nightshift-jobs/nightshift/internal/testenv"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	log := slog.New(slog.NewJSONHandler(os.Stdout, &slog.HandlerOptions{Level: slog.LevelWarn}))
	dir := os.Getenv(testenv.EnvRunsDir)
	reg := nightshift.NewRegistry()
	nightshift.AddWorkerFunc(reg, func(ctx context.Context, job *nightshift.Job[chaos.Args]) (any, error) {
		return chaos.Work(ctx, dir, job.ID, job.Args)
	}, nil)
	app, err := nightshift.NewApp(reg, nightshift.Config{Logger: log})
	if err == nil {
		err = app.Serve(ctx)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaoshandler:", err)
		os.Exit(1)
	}
}
