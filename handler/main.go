// Command handler is nightshift's Azure Functions custom handler: the web server the
// Functions host starts (host.json customHandler.description.defaultExecutablePath). It
// serves RunJobHigh, RunJob and RunJobLow with their dead-letter functions, callbacks, the
// HTTP API, the web dashboard (the Dashboard function) and the recurring-job and
// delayed-job timers, with the example job kinds below; your own handler is the same few
// lines with your kinds registered (README.md).
//
// `handler worker [flags]` runs the same app as a standalone worker instead (package
// worker, docs/worker.md): it consumes the job queues and fires the timers itself, with
// no Functions host. `handler worker --help` lists the flags.
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
	"github.com/nightshift-jobs/nightshift/ui"
	"github.com/nightshift-jobs/nightshift/worker"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	log := slog.New(slog.NewJSONHandler(os.Stdout, nil))
	if len(os.Args) > 1 && os.Args[1] == "worker" {
		// The first signal drains; a second one stops the process at once.
		context.AfterFunc(ctx, stop)
		code := worker.Main(ctx, os.Args[2:], func() (*nightshift.App, error) { return newApp(os.Getenv, log, nil) })
		stop()
		os.Exit(code)
	}
	if err := run(ctx, os.Getenv, log); err != nil {
		log.Error("handler failed", "error", err.Error())
		fmt.Fprintln(os.Stderr, "handler:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, getenv func(string) string, log *slog.Logger) error {
	app, err := newApp(getenv, log, nil)
	if err != nil {
		return err
	}
	return app.Serve(ctx)
}

// newApp is the handler's composition: the example kinds, callbacks (first: the HTTP
// API's client applies their rule), the HTTP API, the recurring and delayed jobs, and the
// web dashboard as the Dashboard function behind the function keys (ui.Feature; leave it
// out and the app has no dashboard).
// store nil builds the clients from the settings.
func newApp(getenv func(string) string, log *slog.Logger, store *storage.Clients) (*nightshift.App, error) {
	reg := nightshift.NewRegistry()
	examples := nightshift.FeatureFunc(func(a *nightshift.App) error { return register(reg, a.Store(), getenv) })
	return nightshift.NewApp(reg, nightshift.Config{Getenv: getenv, Logger: log, Store: store,
		Features: []nightshift.Feature{examples, callback.Feature(nil), httpapi.Feature(nil), schedule.Feature(nil), ui.Feature(nil)}})
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
