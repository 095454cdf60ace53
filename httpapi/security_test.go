package httpapi_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nightshift-jobs/nightshift/envelope"
	"github.com/nightshift-jobs/nightshift/httpapi"
	"github.com/nightshift-jobs/nightshift/internal/testenv"
	"github.com/nightshift-jobs/nightshift/record"
	"github.com/nightshift-jobs/nightshift/storage"
)

// queueExists reports whether the queue is there (and fails the test on other errors).
func queueExists(t *testing.T, store *storage.Clients, name string) bool {
	t.Helper()
	_, err := testenv.QueueService(store).NewQueueClient(name).GetProperties(context.Background(), nil)
	if err != nil && !storage.IsNotFound(err) {
		t.Fatal(err)
	}
	return err == nil
}

// TestQueueTargetsConfined: an API caller can put jobs only on the app's job queues — not
// on a poison queue (where they would become dead letters of jobs that never ran) and not
// on any other queue of the account; a deleted layout queue is made again, not a 503.
func TestQueueTargetsConfined(t *testing.T) {
	e := newEnv(t)
	l := e.store.Layout
	foreign := l.Name("other-app-queue")
	for _, q := range []string{l.PoisonQueue(l.JobsQueue()), l.PoisonQueue(l.HighQueue()), foreign} {
		r := e.enqueue(`{"kind":"test.echo","queue":"` + q + `"}`)
		checkProblem(t, r, 400, "invalid-request", "queue", "queue", "not one of this app's job queues")
		if strings.Contains(string(r.body), l.JobsQueue()+`"`) {
			t.Errorf("the problem lists the app's queues: %s", r.body)
		}
	}
	if queueExists(t, e.store, foreign) {
		t.Error("enqueueing on a foreign queue created it")
	}
	if r := e.enqueue(`{"kind":"test.echo","queue":"` + l.LowQueue() + `"}`); r.status != 202 {
		t.Fatalf("low queue by name: %d %s", r.status, r.body)
	}
	if _, err := testenv.QueueService(e.store).DeleteQueue(context.Background(), l.HighQueue(), nil); err != nil {
		t.Fatal(err)
	}
	// Azurite answers 409 QueueBeingDeleted for a moment on some versions; the enqueue's
	// own create copes with a 404 only, so wait until the queue is really gone.
	for queueExists(t, e.store, l.HighQueue()) {
		time.Sleep(50 * time.Millisecond)
	}
	if r := e.enqueue(`{"kind":"test.echo","priority":"high"}`); r.status != 202 {
		t.Fatalf("enqueue on the deleted high queue: %d %s", r.status, r.body)
	}
	if !queueExists(t, e.store, l.HighQueue()) {
		t.Error("the high queue was not made again")
	}
}

// TestProblemsDoNotListInventory: a 400 for an unknown kind names the problem, not the
// kinds the app runs.
func TestProblemsDoNotListInventory(t *testing.T) {
	e := newEnv(t)
	r := e.enqueue(`{"kind":"nope"}`)
	checkProblem(t, r, 400, "invalid-request", "not a kind this app runs", "kind", "not a kind this app runs")
	for _, k := range []string{"test.echo", "test.join"} {
		if strings.Contains(string(r.body), k) {
			t.Errorf("the problem lists kind %s: %s", k, r.body)
		}
	}
}

// TestStatusViewsHaveNoStacks: the status and cancel views strip panic stacks (file
// paths, code layout); the stored record keeps them for operators.
func TestStatusViewsHaveNoStacks(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	const stack = "goroutine 7 [running]:\nmain.work()\n\t/home/build/app/worker.go:42 +0x1d"
	for _, id := range []string{"panicked", "retrying"} {
		st := &record.Status{JobID: id, Kind: "test.echo", State: record.StateDead, UpdatedAt: time.Now().UTC(), LastError: "panic: boom",
			Errors: []envelope.AttemptError{{Attempt: 1, At: time.Now().UTC(), Error: "panic: boom", Class: "panic", Stack: stack}}}
		if id == "retrying" {
			st.State = record.StateRetrying
		}
		if _, err := e.store.PutStatus(ctx, st, ""); err != nil {
			t.Fatal(err)
		}
	}
	r := e.status("panicked", "?logs=true")
	if r.status != 200 || !strings.Contains(string(r.body), "panic: boom") {
		t.Fatalf("status: %d %s", r.status, r.body)
	}
	r2 := e.call(httpapi.FunctionCancel, "POST", base+"/retrying/cancel", "", map[string]string{"id": "retrying"}, nil)
	if r2.status != 200 {
		t.Fatalf("cancel: %d %s", r2.status, r2.body)
	}
	for _, body := range []string{string(r.body), string(r2.body)} {
		if strings.Contains(body, "worker.go") || strings.Contains(body, "goroutine") || strings.Contains(body, `"stack"`) {
			t.Errorf("a view carries the stack: %s", body)
		}
	}
	kept, _, err := e.store.GetStatus(ctx, "panicked")
	if err != nil || len(kept.Errors) != 1 || kept.Errors[0].Stack != stack {
		t.Errorf("the stored record lost its stack: %+v %v", kept, err)
	}
}

// TestPayloadMaximumHonouredByTheAPI: NIGHTSHIFT_MAX_PAYLOAD_BYTES, read once with the
// storage settings, bounds the args of every client built on them — here the HTTP API's.
func TestPayloadMaximumHonouredByTheAPI(t *testing.T) {
	e := newEnv(t, storage.SettingMaxPayloadBytes, "100")
	r := e.enqueue(`{"kind":"test.echo","args":{"text":"` + strings.Repeat("x", 1000) + `"}}`)
	checkProblem(t, r, 413, "too-large", "", "args", "larger than the app's maximum payload")
	if r := e.enqueue(`{"kind":"test.echo","args":{"text":"small"}}`); r.status != 202 {
		t.Fatalf("small args: %d %s", r.status, r.body)
	}
}
