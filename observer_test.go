package nightshift_test

import (
	"context"

	"log/slog"
	"slices"
	"sync"
	"testing"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/nightshifttest"
)

type obsOK struct{}

func (obsOK) Kind() string { return "obs.ok" }

type obsFail struct{}

func (obsFail) Kind() string { return "obs.fail" }

// recObserver records what the executor tells it.
type recObserver struct {
	mu     sync.Mutex
	events []string
	ends   map[string][]nightshift.AttemptEnd
	dead   []nightshift.DeadLetterInfo
}

type recAttempt struct {
	o  *recObserver
	id string
}

func (o *recObserver) add(e string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.events = append(o.events, e)
}

func (o *recObserver) StartAttempt(ctx context.Context, a nightshift.AttemptInfo) (context.Context, nightshift.AttemptObserver) {
	o.add("start " + a.Kind)
	return ctx, &recAttempt{o: o, id: a.JobID}
}

func (o *recObserver) Callback(ctx context.Context, c nightshift.CallbackInfo) {
	o.add("callback " + c.Kind)
}

func (o *recObserver) DeadLetter(ctx context.Context, d nightshift.DeadLetterInfo) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.dead = append(o.dead, d)
}

func (a *recAttempt) LogAttrs() []slog.Attr { return []slog.Attr{slog.String("observed", "yes")} }
func (a *recAttempt) Running()              { a.o.add("running") }
func (a *recAttempt) End(e nightshift.AttemptEnd) {
	a.o.mu.Lock()
	defer a.o.mu.Unlock()
	a.o.ends[a.id] = append(a.o.ends[a.id], e)
	a.o.events = append(a.o.events, "end "+e.Outcome)
}

// The executor tells its Observer of each delivery (start, running, end with outcome and
// error class) and of each dead letter.
func TestObserverHearsDeliveries(t *testing.T) {
	obs := &recObserver{ends: map[string][]nightshift.AttemptEnd{}}
	reg := nightshift.NewRegistry()
	fast := &nightshift.WorkerOptions{Backoff: nightshift.ConstantBackoff(0), MaxAttempts: 2}
	nightshift.AddWorkerFunc(reg, func(ctx context.Context, job *nightshift.Job[obsOK]) (any, error) { return nil, nil }, fast)
	nightshift.AddWorkerFunc(reg, func(ctx context.Context, job *nightshift.Job[obsFail]) (any, error) {
		return nil, nightshift.Permanentf("no")
	}, fast)
	app, err := nightshifttest.NewApp(reg, &nightshifttest.AppOptions{Handler: nightshift.HandlerOptions{Observer: obs}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ok, err := app.Client.Enqueue(ctx, obsOK{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	bad, err := app.Client.Enqueue(ctx, obsFail{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := app.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	if e := obs.ends[ok.JobID]; len(e) != 1 || e[0].Outcome != "succeeded" || e[0].ErrorClass != "" {
		t.Errorf("ok job's ends = %+v", e)
	}
	if e := obs.ends[bad.JobID]; len(e) != 1 || e[0].Outcome != "dead" || e[0].ErrorClass != "permanent" || e[0].DeadReason != "permanent_error" || e[0].Error == "" {
		t.Errorf("failing job's ends = %+v", e)
	}
	if len(obs.dead) != 1 || obs.dead[0].JobID != bad.JobID || !obs.dead[0].Recorded || obs.dead[0].Kind != "obs.fail" {
		t.Errorf("dead letters = %+v", obs.dead)
	}
	if n := len(slices.DeleteFunc(slices.Clone(obs.events), func(e string) bool { return e != "running" })); n != 2 {
		t.Errorf("events = %v; want two workers running", obs.events)
	}
}
