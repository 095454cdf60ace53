package nightshift

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nightshift-jobs/nightshift/envelope"
	"github.com/nightshift-jobs/nightshift/hostproto"
	"github.com/nightshift-jobs/nightshift/internal/testenv"
	"github.com/nightshift-jobs/nightshift/record"
	"github.com/nightshift-jobs/nightshift/storage"
)

type snoozyArgs struct {
	Times int `json:"times"`
}

func (snoozyArgs) Kind() string { return "test.flow.snoozy" }

// takeOne receives the one message on queue (waiting for it to be visible), deletes it
// and returns it as a first delivery.
func takeOne(t *testing.T, c *storage.Clients, queue string) delivery {
	t.Helper()
	ctx := context.Background()
	var d delivery
	testenv.WaitFor(t, 30*time.Second, "the job's message", func() bool {
		msgs, err := c.Store().Receive(ctx, queue, 1, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) == 0 {
			return false
		}
		m := msgs[0]
		if err := c.Store().DeleteMessage(ctx, queue, m.ID, m.PopReceipt); err != nil {
			t.Fatal(err)
		}
		d = delivery{Queue: queue, Body: []byte(m.Text), Meta: hostproto.QueueMeta{ID: m.ID, DequeueCount: 1, InsertionTime: m.InsertionTime}}
		return true
	})
	return d
}

// Snooze three times then succeed: every run is attempt 1, the status shows the snoozes
// while the job waits and when it ends, and a redelivery of a message the job already
// snoozed from is skipped (Azurite and memory, through the pipeline).
func TestSnoozeThreeTimesThenSucceed(t *testing.T) {
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			c := b.Clients(t)
			ctx := context.Background()
			reg := NewRegistry()
			var attempts, snoozes []int
			AddWorkerFunc(reg, func(_ context.Context, j *Job[snoozyArgs]) (any, error) {
				attempts, snoozes = append(attempts, j.Attempt), append(snoozes, j.Snoozes)
				if j.Snoozes < j.Args.Times {
					j.Logger.Info("not yet")
					return nil, fmt.Errorf("waiting for the partner: %w", Snooze(50*time.Millisecond))
				}
				return "done", nil
			}, nil)
			h := NewHandler(reg, c, &HandlerOptions{Logger: slog.New(slog.DiscardHandler)})
			q := c.Layout.JobsQueue()
			first := delivery{Queue: q, Body: []byte(`{"job_id":"snoozy-1","kind":"test.flow.snoozy","args":{"times":3}}`)}
			d := first
			for i := 1; i <= 3; i++ {
				if out := h.exec.runJob(ctx, d); out.Err != nil || out.Outcome != "snoozed" {
					t.Fatalf("run %d: %+v", i, out)
				}
				st, _, err := c.GetStatus(ctx, "snoozy-1")
				if err != nil || st.State != record.StateQueued || st.Attempt != 1 || st.Snoozes != i || st.NextRunAt.IsZero() || len(st.Errors) != 0 {
					t.Fatalf("status after snooze %d: %+v %v", i, st, err)
				}
				d = takeOne(t, c, q)
				env, err := envelope.Decode(d.Body)
				if err != nil || env.Attempt != 1 || env.Snoozes != i || env.RunAt.IsZero() {
					t.Fatalf("message after snooze %d: %+v %v", i, env, err)
				}
			}
			// The original message again (a redelivery after a crash: its dequeue count
			// is 2): its snooze is past.
			again := first
			again.Meta.DequeueCount = 2
			if out := h.exec.runJob(ctx, again); out.Outcome != "skipped" {
				t.Fatalf("redelivered original: %+v", out)
			}
			if out := h.exec.runJob(ctx, d); out.Err != nil || out.Outcome != "succeeded" {
				t.Fatalf("last run: %+v", out)
			}
			st, _, err := c.GetStatus(ctx, "snoozy-1")
			if err != nil || st.State != record.StateSucceeded || st.Attempt != 1 || st.Snoozes != 3 || len(st.Errors) != 0 {
				t.Fatalf("final status: %+v %v", st, err)
			}
			if fmt.Sprint(attempts) != "[1 1 1 1]" || fmt.Sprint(snoozes) != "[0 1 2 3]" {
				t.Fatalf("runs saw attempts %v, snoozes %v", attempts, snoozes)
			}
			if n := strings.Count(fmt.Sprint(st.Logs), "not yet"); n != 3 {
				t.Fatalf("status logs keep %d of the snoozed runs' lines: %+v", n, st.Logs)
			}
			if n, err := c.Store().Count(ctx, q); err != nil || n != 0 {
				t.Fatalf("queue holds %d (%v) after the job", n, err)
			}
		})
	}
}

// Past its kind's MaxSnoozes a snooze fails the job permanently, with an error that says
// so; a Snooze longer than envelope.MaxScheduleAhead too. Registration refuses a
// MaxSnoozes past envelope.MaxSnoozes.
func TestSnoozePastTheBoundFails(t *testing.T) {
	c := testenv.Memory(t)
	ctx := context.Background()
	reg := NewRegistry()
	AddWorkerFunc(reg, func(_ context.Context, j *Job[snoozyArgs]) (any, error) {
		if j.Args.Times < 0 {
			return nil, Snooze(envelope.MaxScheduleAhead + time.Hour)
		}
		return nil, Snooze(0)
	}, &WorkerOptions{MaxSnoozes: 2})
	h := NewHandler(reg, c, &HandlerOptions{Logger: slog.New(slog.DiscardHandler)})
	q := c.Layout.JobsQueue()
	d := delivery{Queue: q, Body: []byte(`{"job_id":"snoozy-2","kind":"test.flow.snoozy","args":{"times":1}}`)}
	for i := 1; i <= 2; i++ {
		if out := h.exec.runJob(ctx, d); out.Outcome != "snoozed" {
			t.Fatalf("snooze %d: %+v", i, out)
		}
		d = takeOne(t, c, q)
	}
	if out := h.exec.runJob(ctx, d); out.Outcome != "dead" || out.reason != record.ReasonPermanentError {
		t.Fatalf("third snooze: %+v", out)
	}
	st, _, err := c.GetStatus(ctx, "snoozy-2")
	if err != nil || st.State != record.StateDead || st.Attempt != 1 || st.Snoozes != 2 ||
		!strings.Contains(st.LastError, "snoozed more often than its kind allows: 2 snoozes done, WorkerOptions.MaxSnoozes is 2") {
		t.Fatalf("status: %+v %v", st, err)
	}

	long := delivery{Queue: q, Body: []byte(`{"job_id":"snoozy-3","kind":"test.flow.snoozy","args":{"times":-1}}`)}
	if out := h.exec.runJob(ctx, long); out.Outcome != "dead" {
		t.Fatalf("too long a snooze: %+v", out)
	}
	if st, _, err := c.GetStatus(ctx, "snoozy-3"); err != nil || !strings.Contains(st.LastError, "longer than envelope.MaxScheduleAhead") {
		t.Fatalf("status: %+v %v", st, err)
	}

	err = AddWorkerSafely[snoozyArgs](NewRegistry(), WorkFunc[snoozyArgs](func(context.Context, *Job[snoozyArgs]) (any, error) { return nil, nil }),
		&WorkerOptions{MaxSnoozes: envelope.MaxSnoozes + 1})
	if err == nil || !strings.Contains(err.Error(), "MaxSnoozes 1001 is more than 1000") {
		t.Fatalf("registration: %v", err)
	}
	if !IsSnooze(fmt.Errorf("x: %w", Snooze(time.Second))) || IsSnooze(errors.New("x")) {
		t.Fatal("IsSnooze")
	}
}
