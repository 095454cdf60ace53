package nightshifttest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"time"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/envelope"
	"github.com/nightshift-jobs/nightshift/internal/store"
	"github.com/nightshift-jobs/nightshift/internal/testenv"
	"github.com/nightshift-jobs/nightshift/storage"
)

// App is an in-memory nightshift app for tests: the app's registry served by the real
// handler on in-memory storage (the same semantics as Azure Storage: ETags, visibility,
// dequeue counts, poison queues), a Client to enqueue and read jobs, and Drain to play the
// Functions host's queue triggers until nothing is left to run. No Azurite, no network.
//
// The client works on it as on Azure Storage (Enqueue, Status, Result, Wait, Cancel,
// ListJobs, QueueDepths, DeadLetter, Replay; App.Jobs lists every job). Drain does not
// run the ScheduleSweep timer, so a job delayed beyond nightshift.MaxEnqueueDelay does
// not run. The Require helpers assert what the app holds.
type App struct {
	// Client enqueues and reads jobs of the app.
	Client *nightshift.Client
	store  *storage.Clients
	h      http.Handler

	mu   sync.Mutex
	seen map[string]*envelope.Envelope // the envelope Drain last delivered, per job id
}

// AppOptions configure an App. The zero value is fine.
type AppOptions struct {
	// Logger receives the handler's log; default discarded.
	Logger *slog.Logger
	// Handler are more handler options (Logger is taken from above); its Observer is the
	// app's (nightshift.Config.Observer), so it also traces the Client's enqueues.
	Handler nightshift.HandlerOptions
	// Features are installed on the app as a handler's main installs them
	// (nightshift.Config.Features): callback.Feature(&callback.Options{…}), for example.
	Features []nightshift.Feature
	// Settings are the app settings the app and its features read (nightshift.Config's
	// Getenv); none by default, whatever the process environment holds.
	Settings map[string]string
}

// NewApp returns an App serving reg on fresh in-memory storage: a nightshift.App with the
// options' features and settings, as a handler's main builds one.
func NewApp(reg *nightshift.Registry, opts *AppOptions) (*App, error) {
	o := AppOptions{}
	if opts != nil {
		o = *opts
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	st, err := storage.NewMemory("", time.Now)
	if err != nil {
		return nil, err
	}
	ho := o.Handler
	ho.Logger = o.Logger
	app, err := nightshift.NewApp(reg, nightshift.Config{Getenv: func(k string) string { return o.Settings[k] },
		Logger: o.Logger, Store: st, Handler: ho, Features: o.Features, Observer: ho.Observer})
	if err != nil {
		return nil, fmt.Errorf("nightshifttest: %w", err)
	}
	return &App{Client: app.Client(), store: st, h: app.Handler(), seen: map[string]*envelope.Envelope{}}, nil
}

// Storage returns the app's in-memory storage, for building another client on it
// (nightshift.NewClient) or reading its records.
func (a *App) Storage() *storage.Clients { return a.store }

// queueFunctions pairs each job queue with its run and dead-letter functions.
func (a *App) queueFunctions() [][3]string {
	l := a.store.Layout
	return [][3]string{
		{l.HighQueue(), nightshift.FunctionRunJobHigh, nightshift.FunctionRunDeadLetterHigh},
		{l.JobsQueue(), nightshift.FunctionRunJob, nightshift.FunctionRunDeadLetter},
		{l.LowQueue(), nightshift.FunctionRunJobLow, nightshift.FunctionRunDeadLetterLow},
	}
}

// Drain delivers every visible message of the job queues and their poison queues to the
// handler, as the host's queue triggers would, until none is left; it returns how many
// it delivered. Retries wait out their backoff as invisible messages, so a job that keeps
// failing is delivered again only once its delay has passed (give the kind a short
// Backoff, e.g. nightshift.ConstantBackoff(0), to see it reach its end in one Drain). An
// invocation the handler fails is an error.
func (a *App) Drain(ctx context.Context) (int, error) {
	total := 0
	for range 1000 {
		n := 0
		for _, q := range a.queueFunctions() {
			for _, pair := range [][2]string{{q[0], q[1]}, {a.store.Layout.PoisonQueue(q[0]), q[2]}} {
				k, err := a.deliver(ctx, pair[0], pair[1])
				if err != nil {
					return total + n, err
				}
				n += k
			}
		}
		if n == 0 {
			return total, nil
		}
		total += n
	}
	return total, fmt.Errorf("nightshifttest: the queues did not drain after %d deliveries", total)
}

// deliver plays one queue trigger poll: receive, invoke, delete on success.
func (a *App) deliver(ctx context.Context, queue, function string) (int, error) {
	q := a.store.Store()
	msgs, err := q.Receive(ctx, queue, store.MaxReceive, time.Minute)
	if err != nil {
		return 0, err
	}
	for _, m := range msgs {
		a.remember(m.Text)
		req := httptest.NewRequestWithContext(ctx, http.MethodPost, "/"+function, bytes.NewReader(testenv.QueueInvocation(function, m)))
		req.Header.Set("Content-Type", "application/json; charset=utf-8")
		rec := httptest.NewRecorder()
		a.h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			return 0, fmt.Errorf("nightshifttest: %s failed: %d %s", function, rec.Code, rec.Body.String())
		}
		if err := q.DeleteMessage(ctx, queue, m.ID, m.PopReceipt); err != nil {
			return 0, err
		}
	}
	return len(msgs), nil
}

// remember keeps the envelope of a delivered message, for matching a job's args.
func (a *App) remember(text string) {
	env, err := envelope.Decode([]byte(text))
	if err != nil || env.JobID == "" {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.seen[env.JobID] = env
}
