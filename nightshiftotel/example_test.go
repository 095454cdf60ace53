package nightshiftotel_test

import (
	"context"
	"log/slog"
	"os"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/nightshiftotel"
)

// A handler's main with telemetry: OTLP exporters by the OTEL_* settings, the observer on
// the app (jobs and the app's client), the queue-depth gauge, and trace ids on log lines.
func Example() {
	ctx := context.Background()
	shutdown, err := nightshiftotel.Setup(ctx)
	if err != nil {
		panic(err)
	}
	defer func() { _ = shutdown(context.Background()) }()
	obs, err := nightshiftotel.New(nil)
	if err != nil {
		panic(err)
	}
	reg := nightshift.NewRegistry() // … the app's kinds
	log := slog.New(nightshiftotel.LogHandler(slog.NewJSONHandler(os.Stdout, nil)))
	app, err := nightshift.NewApp(reg, nightshift.Config{Observer: obs, Logger: log})
	if err != nil {
		panic(err)
	}
	obs.WatchQueues(app.Client())
	_ = app.Serve(ctx)
}
