package callback_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/callback"
	"github.com/nightshift-jobs/nightshift/envelope"
	"github.com/nightshift-jobs/nightshift/internal/store"
	"github.com/nightshift-jobs/nightshift/internal/testenv"
	"github.com/nightshift-jobs/nightshift/record"
	"github.com/nightshift-jobs/nightshift/storage"
)

// workflowFixture is a handler with the work kind, the callback kind and both callback
// hooks (job end and workflow end) on one backend.
func workflowFixture(t *testing.T, st *storage.Clients, opts callback.Options) (*nightshift.Handler, *nightshift.Client) {
	t.Helper()
	reg := nightshift.NewRegistry()
	nightshift.AddWorkerFunc(reg, func(ctx context.Context, job *nightshift.Job[workArgs]) (any, error) {
		if job.Args.Fail {
			return nil, nightshift.Permanentf("failing on purpose")
		}
		return map[string]string{"done": job.ID}, nil
	}, nil)
	opts.Backoff = nightshift.ConstantBackoff(0)
	opts.MaxAttempts = 4
	if err := callback.Register(reg, st, opts); err != nil {
		t.Fatal(err)
	}
	h := nightshift.NewHandler(reg, st, &nightshift.HandlerOptions{
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
		OnJobEnd: callback.OnJobEnd(st), OnWorkflowEnd: callback.OnWorkflowEnd(st),
	})
	return h, nightshift.NewClient(st, &nightshift.ClientOptions{CheckCallback: opts.CheckCallback})
}

// invokeTwice delivers one received message to RunJob twice, as a host redelivering it
// after a lost acknowledgement would, then deletes it.
func invokeTwice(t *testing.T, st *storage.Clients, h http.Handler, m store.Message) {
	t.Helper()
	for range 2 {
		req := httptest.NewRequest(http.MethodPost, "/"+nightshift.FunctionRunJob, bytes.NewReader(testenv.QueueInvocation(nightshift.FunctionRunJob, m)))
		req.Header.Set("Content-Type", "application/json; charset=utf-8")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			t.Fatalf("RunJob: %d %s", rec.Code, rec.Body.String())
		}
	}
	if err := st.Store().DeleteMessage(context.Background(), st.Layout.JobsQueue(), m.ID, m.PopReceipt); err != nil {
		t.Fatal(err)
	}
}

// callbackMessages counts the delivery jobs waiting on the jobs queue.
func callbackMessages(t *testing.T, st *storage.Clients) int {
	t.Helper()
	msgs, err := st.Store().Peek(context.Background(), st.Layout.JobsQueue(), store.MaxReceive)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, m := range msgs {
		var env envelope.Envelope
		if json.Unmarshal([]byte(m.Text), &env) == nil && env.Kind == callback.Kind {
			n++
		}
	}
	return n
}

// TestWorkflowEndWebhook: a workflow with a webhook callback (a → b) fires it once when it
// succeeds, although the last step's end is delivered twice: the delivery job's id is
// derived from the workflow, so the redelivery's enqueue is refused. The webhook is
// signed like a job's and carries the workflow record.
func TestWorkflowEndWebhook(t *testing.T) {
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			st := b.Clients(t)
			rcv := newReceiver(t)
			h, client := workflowFixture(t, st, callback.Options{Secrets: secretsFor(t, rcv.srv.URL, secret), AllowPrivate: true, AllowHTTP: true})
			ctx := context.Background()
			w, err := client.StartWorkflow(ctx, nightshift.WorkflowParams{WorkflowID: "wf-hook-" + b.Name, CallbackURL: rcv.srv.URL + "/wf",
				Steps: []nightshift.WorkflowStepSpec{{Name: "a", Args: workArgs{}}, {Name: "b", Args: workArgs{}, DependsOn: []string{"a"}}}})
			if err != nil {
				t.Fatal(err)
			}
			if testenv.DeliverOnce(t, st, h, nightshift.FunctionRunJob, st.Layout.JobsQueue()) != 1 {
				t.Fatal("step a was not delivered alone")
			}
			msgs, err := st.Store().Receive(ctx, st.Layout.JobsQueue(), store.MaxReceive, 0)
			if err != nil || len(msgs) != 1 {
				t.Fatalf("want step b's message alone, got %d, %v", len(msgs), err)
			}
			invokeTwice(t, st, h, msgs[0])
			if n := callbackMessages(t, st); n != 1 {
				t.Fatalf("%d delivery jobs enqueued for the workflow's end, want 1", n)
			}
			testenv.Drain(t, st, h, st.Layout.JobsQueue(), nightshift.FunctionRunJob, nightshift.FunctionRunDeadLetter)
			if n := rcv.count(); n != 1 {
				t.Fatalf("receiver got %d webhooks, want 1", n)
			}
			var p callback.Payload
			if err := json.Unmarshal(rcv.bodies[0], &p); err != nil {
				t.Fatal(err)
			}
			id := callback.WorkflowDeliveryID(w.CreatedAt, w.WorkflowID, callback.EventWorkflowSucceeded)
			if p.Event != callback.EventWorkflowSucceeded || p.WorkflowID != w.WorkflowID || p.Workflow == nil ||
				p.Workflow.State != record.WorkflowSucceeded || len(p.Workflow.Steps) != 2 || p.Status != nil || p.DeliveryID != id {
				t.Fatalf("payload = %s", rcv.bodies[0])
			}
			if got := rcv.requests[0].Header.Get(callback.HeaderEvent); got != callback.EventWorkflowSucceeded {
				t.Errorf("event header %q", got)
			}
			if ds, err := client.Status(ctx, id); err != nil || ds.State != record.StateSucceeded || ds.Kind != callback.Kind {
				t.Fatalf("delivery job status = %+v, %v", ds, err)
			}
		})
	}
}

// TestWorkflowEndCallbackFailedAndCancelled: a failed workflow and a cancelled one each
// fire one callback (queue target) with their event, however many of their steps end
// afterwards; a callback the delivery side refuses is refused at StartWorkflow.
func TestWorkflowEndCallbackFailedAndCancelled(t *testing.T) {
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			st := b.Clients(t)
			target := st.Layout.Name("wfcb")
			if err := st.Store().CreateQueue(context.Background(), target); err != nil {
				t.Fatal(err)
			}
			h, client := workflowFixture(t, st, callback.Options{Queues: []string{target}})
			ctx := context.Background()
			steps := []nightshift.WorkflowStepSpec{{Name: "a", Args: workArgs{Fail: true}}, {Name: "b", Args: workArgs{}}, {Name: "c", Args: workArgs{}, DependsOn: []string{"a", "b"}}}
			if _, err := client.StartWorkflow(ctx, nightshift.WorkflowParams{WorkflowID: "wf-fail", CallbackQueue: target, Steps: steps}); err != nil {
				t.Fatal(err)
			}
			if _, err := client.StartWorkflow(ctx, nightshift.WorkflowParams{WorkflowID: "wf-cancel", CallbackQueue: target, Steps: steps[1:2]}); err != nil {
				t.Fatal(err)
			}
			if _, err := client.CancelWorkflow(ctx, "wf-cancel"); err != nil {
				t.Fatal(err)
			}
			testenv.Drain(t, st, h, st.Layout.JobsQueue(), nightshift.FunctionRunJob, nightshift.FunctionRunDeadLetter)
			msgs, err := st.Store().Receive(ctx, target, store.MaxReceive, 0)
			if err != nil {
				t.Fatal(err)
			}
			events := map[string]string{}
			for _, m := range msgs {
				var p callback.Payload
				if err := json.Unmarshal([]byte(m.Text), &p); err != nil {
					t.Fatal(err)
				}
				if _, dup := events[p.WorkflowID]; dup {
					t.Fatalf("workflow %s notified twice", p.WorkflowID)
				}
				events[p.WorkflowID] = p.Event
			}
			if events["wf-fail"] != callback.EventWorkflowFailed || events["wf-cancel"] != callback.EventWorkflowCancelled || len(events) != 2 {
				t.Fatalf("events = %v", events)
			}
			_, err = client.StartWorkflow(ctx, nightshift.WorkflowParams{CallbackQueue: st.Layout.Name("elsewhere"), Steps: steps[1:2]})
			if err == nil {
				t.Fatal("a callback queue the delivery refuses was accepted")
			}
		})
	}
}
