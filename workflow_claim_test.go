package nightshift

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nightshift-jobs/nightshift/hostproto"
	"github.com/nightshift-jobs/nightshift/internal/testenv"
	"github.com/nightshift-jobs/nightshift/record"
)

type claimArgs struct{}

func (claimArgs) Kind() string { return "test.claim" }

// Two copies of a workflow step's message delivered at the same time run the step once:
// the first claims the run (a conditional running write), the copy that arrives while it
// runs is acknowledged as skipped, and the step ends succeeded (Azurite and memory).
func TestWorkflowStepCopiesRunOnce(t *testing.T) {
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			c := b.Clients(t)
			ctx := context.Background()
			var runs atomic.Int64
			started, release := make(chan struct{}), make(chan struct{})
			reg := NewRegistry()
			AddWorkerFunc(reg, func(context.Context, *Job[claimArgs]) (any, error) {
				if runs.Add(1) == 1 { // the first run waits for the copy's delivery
					close(started)
					<-release
				}
				return "ok", nil
			}, nil)
			h := NewHandler(reg, c, &HandlerOptions{Logger: slog.New(slog.DiscardHandler)})
			client := NewClient(c, nil)
			w, err := client.StartWorkflow(ctx, WorkflowParams{WorkflowID: "wf-claim", Steps: []WorkflowStepSpec{{Name: "a", Args: claimArgs{}}}})
			if err != nil {
				t.Fatal(err)
			}
			q := c.Layout.JobsQueue()
			msgs, err := c.Store().Receive(ctx, q, 1, time.Minute)
			if err != nil || len(msgs) != 1 {
				t.Fatalf("receive: %d %v", len(msgs), err)
			}
			m := msgs[0]
			d := delivery{Queue: q, Body: []byte(m.Text), Meta: hostproto.QueueMeta{ID: m.ID, DequeueCount: 1, InsertionTime: m.InsertionTime}}
			first := make(chan outcome, 1)
			go func() { first <- h.exec.runJob(ctx, d) }()
			<-started
			copyOf := d
			copyOf.Meta.ID = "copy-of-" + m.ID
			if out := h.exec.runJob(ctx, copyOf); out.Outcome != "skipped" {
				t.Errorf("the copy delivered while the step runs: %+v, want skipped", out)
			}
			close(release)
			if out := <-first; out.Err != nil || out.Outcome != "succeeded" {
				t.Fatalf("first delivery: %+v", out)
			}
			if n := runs.Load(); n != 1 {
				t.Fatalf("the step ran %d times", n)
			}
			st, _, err := c.GetStatus(ctx, w.Step("a").JobID)
			if err != nil || st.State != record.StateSucceeded {
				t.Fatalf("step status %+v %v", st, err)
			}
		})
	}
}
