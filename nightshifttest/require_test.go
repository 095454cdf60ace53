package nightshifttest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/nightshifttest"
	"github.com/nightshift-jobs/nightshift/record"
)

// testing.TB is a nightshifttest.TB.
var _ nightshifttest.TB = testing.TB(nil)

// fakeTB records failures instead of stopping the test.
type fakeTB struct{ failures []string }

func (f *fakeTB) Helper() {}

func (f *fakeTB) Fatalf(format string, args ...any) {
	f.failures = append(f.failures, fmt.Sprintf(format, args...))
}

// check fails t unless tb failed exactly when wantFail says, with a message holding want.
func (f *fakeTB) check(t *testing.T, what string, wantFail bool, want string) {
	t.Helper()
	defer func() { f.failures = nil }()
	if !wantFail {
		if len(f.failures) != 0 {
			t.Errorf("%s: failed: %q", what, f.failures)
		}
		return
	}
	if len(f.failures) != 1 || !strings.Contains(f.failures[0], want) {
		t.Errorf("%s: failures %q, want one containing %q", what, f.failures, want)
	}
}

// requireApp runs a succeeding and a dying resize job, and leaves a third one queued.
func requireApp(t *testing.T) (app *nightshifttest.App, ok, bad, queued string) {
	t.Helper()
	flaky := 0
	app, err := nightshifttest.NewApp(resizeRegistry(&flaky), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	enqueue := func(args ResizeArgs, opts *nightshift.EnqueueOptions) string {
		res, err := app.Client.Enqueue(ctx, args, opts)
		if err != nil {
			t.Fatal(err)
		}
		return res.JobID
	}
	ok = enqueue(ResizeArgs{Blob: "cat.png", Width: 64}, &nightshift.EnqueueOptions{Meta: map[string]string{"tenant": "acme"}})
	bad = enqueue(ResizeArgs{Blob: "dog.png"}, nil)
	if _, err := app.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	queued = enqueue(ResizeArgs{Blob: "owl.png", Width: 32}, nil)
	return app, ok, bad, queued
}

func TestRequireEnqueued(t *testing.T) {
	app, ok, _, queued := requireApp(t)
	ctx := t.Context()
	tb := &fakeTB{}

	st := nightshifttest.RequireEnqueued(ctx, tb, app, "resize", &nightshifttest.RequireOptions{Args: ResizeArgs{Blob: "cat.png", Width: 64}})
	tb.check(t, "args of a drained job", false, "")
	if st == nil || st.JobID != ok || st.State != record.StateSucceeded {
		t.Errorf("matched %+v, want job %s", st, ok)
	}
	// A job not delivered yet is matched by the args on its queue message.
	st = nightshifttest.RequireEnqueued(ctx, tb, app, "resize", &nightshifttest.RequireOptions{Args: json.RawMessage(`{"width":32,"blob":"owl.png"}`)})
	tb.check(t, "args of a queued job", false, "")
	if st == nil || st.JobID != queued || st.State != record.StateQueued {
		t.Errorf("matched %+v, want job %s", st, queued)
	}
	st = nightshifttest.RequireEnqueued(ctx, tb, app, "resize", &nightshifttest.RequireOptions{Meta: map[string]string{"tenant": "acme"}, State: record.StateSucceeded})
	tb.check(t, "meta and state", false, "")
	if st == nil || st.JobID != ok {
		t.Errorf("matched %+v, want job %s", st, ok)
	}

	if st := nightshifttest.RequireEnqueued(ctx, tb, app, "resize", nil); st != nil {
		t.Errorf("three jobs matched one: %+v", st)
	}
	tb.check(t, "three jobs", true, `want 1 job(s) of kind "resize", found 3; the app holds resize dead, resize queued, resize succeeded`)
	nightshifttest.RequireEnqueued(ctx, tb, app, "resize", &nightshifttest.RequireOptions{Args: ResizeArgs{Blob: "cat.png", Width: 65}})
	tb.check(t, "other args", true, `of kind "resize" with args {"blob":"cat.png","width":65}, found 0`)
	nightshifttest.RequireEnqueued(ctx, tb, app, "resize", &nightshifttest.RequireOptions{Meta: map[string]string{"tenant": "other"}})
	tb.check(t, "other meta", true, "with meta map[tenant:other], found 0")
	nightshifttest.RequireEnqueued(ctx, tb, app, "send_email", nil)
	tb.check(t, "another kind", true, `of kind "send_email", found 0`)
	nightshifttest.RequireEnqueued(ctx, tb, app, "resize", &nightshifttest.RequireOptions{Args: make(chan int)})
	tb.check(t, "args that do not encode", true, "RequireOptions.Args")
}

func TestRequireEnqueuedNAndNotEnqueued(t *testing.T) {
	app, ok, bad, _ := requireApp(t)
	ctx := t.Context()
	tb := &fakeTB{}

	sts := nightshifttest.RequireEnqueuedN(ctx, tb, app, "resize", 2, &nightshifttest.RequireOptions{State: ""})
	tb.check(t, "two of three", true, "want 2 job(s)")
	if sts != nil {
		t.Errorf("a failed assertion returned %+v", sts)
	}
	sts = nightshifttest.RequireEnqueuedN(ctx, tb, app, "resize", 3, nil)
	tb.check(t, "three", false, "")
	if len(sts) != 3 || sts[0].JobID != ok || sts[1].JobID != bad {
		t.Errorf("statuses not in enqueue order: %+v", sts)
	}

	nightshifttest.RequireNotEnqueued(ctx, tb, app, "send_email", nil)
	tb.check(t, "no send_email", false, "")
	nightshifttest.RequireNotEnqueued(ctx, tb, app, "resize", &nightshifttest.RequireOptions{State: record.StateCancelled})
	tb.check(t, "no cancelled resize", false, "")
	nightshifttest.RequireNotEnqueued(ctx, tb, app, "resize", &nightshifttest.RequireOptions{State: record.StateDead})
	tb.check(t, "a dead resize", true, `want 0 job(s) of kind "resize" in state dead, found 1`)
}

func TestRequireSucceededAndDied(t *testing.T) {
	app, ok, bad, queued := requireApp(t)
	ctx := t.Context()
	tb := &fakeTB{}

	st := nightshifttest.RequireSucceeded(ctx, tb, app, ok)
	tb.check(t, "succeeded", false, "")
	if st == nil || string(st.Result.JSON) != `{"thumbnail":"cat.png.thumb"}` {
		t.Errorf("status %+v", st)
	}
	if st := nightshifttest.RequireSucceeded(ctx, tb, app, bad); st != nil {
		t.Errorf("a dead job succeeded: %+v", st)
	}
	tb.check(t, "dead, not succeeded", true, "(resize) is dead, not succeeded (last error: permanent: width must be positive)")
	nightshifttest.RequireSucceeded(ctx, tb, app, queued)
	tb.check(t, "queued, not succeeded", true, "is queued, not succeeded")
	nightshifttest.RequireSucceeded(ctx, tb, app, "no-such-job")
	tb.check(t, "unknown job", true, "no job no-such-job")

	dl := nightshifttest.RequireDied(ctx, tb, app, bad)
	tb.check(t, "died", false, "")
	if dl == nil || dl.Reason != record.ReasonPermanentError || dl.Envelope == nil || dl.Envelope.JobID != bad {
		t.Errorf("dead letter %+v", dl)
	}
	if dl := nightshifttest.RequireDied(ctx, tb, app, ok); dl != nil {
		t.Errorf("a succeeded job died: %+v", dl)
	}
	tb.check(t, "succeeded, not dead", true, "(resize) is succeeded, not dead")
	nightshifttest.RequireDied(ctx, tb, app, "no-such-job")
	tb.check(t, "unknown job", true, "no job no-such-job")
}

// A real *testing.T passes the helpers' checks on a job that did what it should.
func TestRequireWithTestingT(t *testing.T) {
	app, ok, bad, _ := requireApp(t)
	nightshifttest.RequireSucceeded(context.Background(), t, app, ok)
	nightshifttest.RequireDied(context.Background(), t, app, bad)
}
