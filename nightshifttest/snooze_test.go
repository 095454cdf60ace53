package nightshifttest_test

import (
	"context"
	"testing"
	"time"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/nightshifttest"
)

type partnerArgs struct {
	Order string `json:"order"`
}

func (partnerArgs) Kind() string { return "test.kit.partner" }

// Snooze three times then succeed, on the in-memory app: one Drain runs the job four
// times, all attempt 1, and the status shows the three snoozes. Work reports a snooze
// as the outcome "snoozed" with its delay.
func TestAppSnoozeThreeTimesThenSucceed(t *testing.T) {
	reg := nightshift.NewRegistry()
	var attempts []int
	nightshift.AddWorkerFunc(reg, func(_ context.Context, j *nightshift.Job[partnerArgs]) (any, error) {
		attempts = append(attempts, j.Attempt)
		if j.Snoozes < 3 {
			return nil, nightshift.Snooze(0)
		}
		return "shipped", nil
	}, nil)
	app, err := nightshifttest.NewApp(reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	res, err := app.Client.Enqueue(ctx, partnerArgs{Order: "o-1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := app.Drain(ctx); err != nil || n != 4 {
		t.Fatalf("drained %d deliveries, %v; want 4", n, err)
	}
	st := nightshifttest.RequireSucceeded(ctx, t, app, res.JobID)
	if st.Attempt != 1 || st.Snoozes != 3 || len(attempts) != 4 || attempts[3] != 1 {
		t.Fatalf("status %+v, attempts %v", st, attempts)
	}

	r, err := nightshifttest.Work[partnerArgs](ctx, nightshift.WorkFunc[partnerArgs](func(context.Context, *nightshift.Job[partnerArgs]) (any, error) {
		return nil, nightshift.Snooze(time.Minute)
	}), partnerArgs{}, nil)
	if err != nil || r.Outcome != "snoozed" || r.RetryIn != time.Minute || !nightshift.IsSnooze(r.Err) {
		t.Fatalf("Work: %+v %v", r, err)
	}
}
