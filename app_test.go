package nightshift_test

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/hostproto"
	"github.com/nightshift-jobs/nightshift/storage"
)

func serveNothing(context.Context, *nightshift.Invocation) (*hostproto.InvokeResponse, error) {
	return &hostproto.InvokeResponse{}, nil
}

// A feature's function must be valid and new: not added twice, not one of the job
// functions; and a feature changes the app only from Install.
func TestNewAppRefusesBadFunctions(t *testing.T) {
	timer := func(name string) nightshift.FunctionSpec {
		return nightshift.FunctionSpec{Name: name, Trigger: nightshift.TriggerTimer, Schedule: "0 * * * * *", Serve: serveNothing}
	}
	var kept *nightshift.App
	cases := []struct {
		name    string
		install func(a *nightshift.App) error
		want    string
	}{
		{"twice", func(a *nightshift.App) error {
			if err := a.AddFunction(timer("Tick")); err != nil {
				return err
			}
			return a.AddFunction(timer("Tick"))
		}, "added twice"},
		{"job function", func(a *nightshift.App) error { return a.AddFunction(timer(nightshift.FunctionRunJob)) }, "one of the job functions"},
		{"bad name", func(a *nightshift.App) error { return a.AddFunction(timer("9lives")) }, "function name"},
		{"no serve", func(a *nightshift.App) error {
			return a.AddFunction(nightshift.FunctionSpec{Name: "Q", Trigger: nightshift.TriggerQueue, Queue: "q"})
		}, "has no Serve"},
		{"http without route", func(a *nightshift.App) error {
			return a.AddFunction(nightshift.FunctionSpec{Name: "H", Trigger: nightshift.TriggerHTTP, Serve: serveNothing})
		}, "needs a route and methods"},
		{"kept app", func(a *nightshift.App) error { kept = a; return nil }, ""},
	}
	for _, c := range cases {
		store, err := storage.NewMemory("", time.Now)
		if err != nil {
			t.Fatal(err)
		}
		_, err = nightshift.NewApp(nightshift.NewRegistry(), nightshift.Config{Store: store,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Features: []nightshift.Feature{nightshift.FeatureFunc(c.install)}})
		if c.want == "" {
			if err != nil {
				t.Errorf("%s: %v", c.name, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: NewApp returned %v, want an error containing %q", c.name, err, c.want)
		}
	}
	if err := kept.AddFunction(timer("Late")); err == nil {
		t.Error("AddFunction after NewApp returned nil")
	}
	if got := len(kept.Functions()); got != 6 {
		t.Errorf("an app without features serves %d functions, want the 6 job and dead-letter functions", got)
	}
}
