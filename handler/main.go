// Command handler is nightshift's Azure Functions custom handler: the web server the
// Functions host starts (host.json customHandler.description.defaultExecutablePath). It
// serves RunJobHigh, RunJob and RunJobLow with their dead-letter functions, the HTTP API,
// the recurring-job and delayed-job timers, and callbacks, with the example job kinds
// below; your own handler is the same few lines with your kinds registered (README.md).
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/callback"
	"github.com/nightshift-jobs/nightshift/httpapi"
	"github.com/nightshift-jobs/nightshift/schedule"
	"github.com/nightshift-jobs/nightshift/storage"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	log := slog.New(slog.NewJSONHandler(os.Stdout, nil))
	if err := run(ctx, os.Getenv, log); err != nil {
		log.Error("handler failed", "error", err.Error())
		fmt.Fprintln(os.Stderr, "handler:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, getenv func(string) string, log *slog.Logger) error {
	store, err := storage.FromEnv(getenv, nil)
	if err != nil {
		return err
	}
	reg := nightshift.NewRegistry()
	if err := register(reg, store, getenv); err != nil {
		return err
	}
	// Callbacks: delivery jobs (webhooks, queue messages) enqueued when a job that asked
	// for one ends.
	callbacks, err := callback.FromEnv(getenv)
	if err != nil {
		return err
	}
	if err := callback.Register(reg, store, callbacks); err != nil {
		return err
	}
	// Recurring jobs (the built-in maintenance job) and the sweeper of far-future delayed
	// jobs: timer functions (functions/Recurring*, functions/ScheduleSweep).
	scheduling := schedule.Setup(reg, &schedule.Options{Getenv: getenv, Logger: log})
	return nightshift.Serve(ctx, reg, &nightshift.ServeOptions{
		Getenv: getenv, Logger: log, Store: store,
		Handler: nightshift.HandlerOptions{OnJobEnd: callback.OnJobEnd(store)},
		// The HTTP API functions (functions/JobsAPI*): enqueue, status, cancel.
		Setup: func(h *nightshift.Handler, store *storage.Clients) error {
			// The API's client refuses callbacks the delivery would refuse (an origin
			// without a webhook secret, an unlisted callback queue) with a 400.
			client := nightshift.NewClient(store, &nightshift.ClientOptions{CheckCallback: callbacks.CheckCallback})
			httpapi.New(client, &httpapi.Options{Kinds: reg.Kinds, Logger: log}).Register(h)
			return scheduling(h, store)
		},
	})
}

// register adds the example job kinds, configured from their settings
// (SettingCSVContainers, SettingFetchAllowPrivate). A bad setting is an error naming it.
func register(reg *nightshift.Registry, store *storage.Clients, getenv func(string) string) error {
	csvStats, err := newCSVStatsWorker(store, getenv(SettingCSVContainers))
	if err != nil {
		return err
	}
	nightshift.AddWorker(reg, csvStats, nil)
	nightshift.AddWorker(reg, newHTTPFetchWorker(getenv(SettingFetchAllowPrivate) == "true"), nil)
	return nil
}
