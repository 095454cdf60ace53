package nightshift_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/envelope"
	"github.com/nightshift-jobs/nightshift/hostproto"
	"github.com/nightshift-jobs/nightshift/internal/store"
	"github.com/nightshift-jobs/nightshift/internal/testenv"
	"github.com/nightshift-jobs/nightshift/record"
	"github.com/nightshift-jobs/nightshift/storage"
)

// pump plays the Functions host for tests: it receives messages from a queue itself and
// delivers them to the in-process handler as host-shaped invocations (double-encoded
// Data.message and Metadata, docs/host-contract.md §1.5), deleting each message after
// a 2xx answer.
type pump struct {
	t     testing.TB
	store *storage.Clients
	h     http.Handler
}

// deliverOnce receives up to 32 visible messages of queue and invokes function for each.
// It returns how many it delivered.
func (p *pump) deliverOnce(ctx context.Context, function, queue string) int {
	s := p.store.Store()
	msgs, err := s.Receive(ctx, queue, store.MaxReceive, 2*time.Second)
	if err != nil {
		if ctx.Err() == nil {
			p.t.Errorf("dequeue %s: %v", queue, err)
		}
		return 0
	}
	for _, m := range msgs {
		body := testenv.QueueInvocation(function, m)
		req := httptest.NewRequest(http.MethodPost, "/"+function, bytes.NewReader(body)).WithContext(ctx)
		req.Header.Set("Content-Type", "application/json; charset=utf-8")
		req.Header.Set(hostproto.HeaderInvocationID, fmt.Sprintf("inv-%s-%d", m.ID, m.DequeueCount))
		rec := httptest.NewRecorder()
		p.h.ServeHTTP(rec, req)
		if rec.Code/100 == 2 {
			if err := s.DeleteMessage(ctx, queue, m.ID, m.PopReceipt); err != nil && ctx.Err() == nil {
				p.t.Errorf("delete message: %v", err)
			}
		}
	}
	return len(msgs)
}

// runUntil delivers jobs and poison messages until cond holds or the timeout passes.
func (p *pump) runUntil(ctx context.Context, timeout time.Duration, cond func() bool) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	jobs := p.store.Layout.JobsQueue()
	for !cond() {
		n := p.deliverOnce(ctx, nightshift.FunctionRunJob, jobs)
		n += p.deliverOnce(ctx, nightshift.FunctionRunDeadLetter, p.store.Layout.PoisonQueue(jobs))
		if ctx.Err() != nil {
			p.t.Fatalf("condition not met within %s", timeout)
		}
		if n == 0 {
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// Test job kinds.

type greetArgs struct {
	Name string `json:"name"`
}

func (greetArgs) Kind() string { return "test.greet" }

type flakyArgs struct {
	// FailLives makes lives below this number fail permanently.
	FailLives int `json:"fail_lives"`
}

func (flakyArgs) Kind() string { return "test.flaky" }

type blockArgs struct{}

func (blockArgs) Kind() string { return "test.block" }

type bigArgs struct {
	Size int `json:"size"`
}

func (bigArgs) Kind() string { return "test.big" }

type fixture struct {
	store   *storage.Clients
	client  *nightshift.Client
	pump    *pump
	started chan string
	ended   chan string
}

func newFixture(t *testing.T) *fixture { return newFixtureWith(t, 20*time.Millisecond) }

// newFixtureWith sets how long an attempt runs before the handler marks it running.
func newFixtureWith(t *testing.T, runningAfter time.Duration) *fixture {
	t.Helper()
	store := testenv.Clients(t)
	f := &fixture{store: store, client: nightshift.NewClient(store, nil), started: make(chan string, 16), ended: make(chan string, 16)}
	reg := nightshift.NewRegistry()
	fast := &nightshift.WorkerOptions{Backoff: nightshift.ConstantBackoff(0), MaxAttempts: 2}
	nightshift.AddWorkerFunc(reg, func(ctx context.Context, job *nightshift.Job[greetArgs]) (any, error) {
		job.Logger.Info("greeting", "name", job.Args.Name)
		return map[string]string{"greeting": "hello " + job.Args.Name}, nil
	}, fast)
	nightshift.AddWorkerFunc(reg, func(ctx context.Context, job *nightshift.Job[flakyArgs]) (any, error) {
		if job.Replay < job.Args.FailLives {
			return nil, nightshift.Permanentf("life %d fails on purpose", job.Replay)
		}
		return map[string]int{"life": job.Replay}, nil
	}, fast)
	nightshift.AddWorkerFunc(reg, func(ctx context.Context, job *nightshift.Job[blockArgs]) (any, error) {
		f.started <- job.ID
		<-ctx.Done()
		f.ended <- job.ID
		return nil, ctx.Err()
	}, fast)
	nightshift.AddWorkerFunc(reg, func(ctx context.Context, job *nightshift.Job[bigArgs]) (any, error) {
		return nightshift.Bytes{ContentType: "text/plain", Data: bytes.Repeat([]byte("x"), job.Args.Size)}, nil
	}, fast)
	h := nightshift.NewHandler(reg, store, &nightshift.HandlerOptions{
		Logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
		RunningAfter: runningAfter, CancelCheck: 50 * time.Millisecond,
	})
	f.pump = &pump{t: t, store: store, h: h}
	return f
}

func (f *fixture) state(t *testing.T, id string) func() bool {
	return func() bool {
		st, err := f.client.Status(context.Background(), id)
		return err == nil && st.State.Terminal()
	}
}

func TestEnqueueWaitResult(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	res, err := f.client.Enqueue(ctx, greetArgs{Name: "Ann"}, &nightshift.EnqueueOptions{Meta: map[string]string{"tenant": "t1"}, MaxAttempts: 3})
	if err != nil {
		t.Fatal(err)
	}
	if res.JobID == "" || res.Kind != "test.greet" || res.Queue != f.store.Layout.JobsQueue() || res.MessageID == "" {
		t.Fatalf("result = %+v", res)
	}
	st, err := f.client.Status(ctx, res.JobID)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != record.StateQueued || st.Kind != "test.greet" || st.Meta["tenant"] != "t1" || st.MaxAttempts != 3 {
		t.Fatalf("status after enqueue = %+v", st)
	}
	// The message is a raw JSON envelope v1 that Decode accepts.
	peek, err := testenv.QueueService(f.store).NewQueueClient(res.Queue).PeekMessage(ctx, nil)
	if err != nil || len(peek.Messages) != 1 {
		t.Fatalf("peek: %v %v", err, peek.Messages)
	}
	env, err := envelope.Decode([]byte(*peek.Messages[0].MessageText))
	if err != nil {
		t.Fatal(err)
	}
	if env.JobID != res.JobID || string(env.Args) != `{"name":"Ann"}` || env.MaxAttempts != 3 || env.Attempt != 1 {
		t.Fatalf("envelope = %+v", env)
	}

	var seen []record.State
	var mu sync.Mutex
	done := make(chan struct{})
	var final *record.Status
	var werr error
	go func() {
		defer close(done)
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		final, werr = f.client.Wait(wctx, res.JobID, &nightshift.WaitOptions{Progress: func(st *record.Status) {
			mu.Lock()
			defer mu.Unlock()
			if st != nil {
				seen = append(seen, st.State)
			}
		}})
	}()
	f.pump.runUntil(ctx, 30*time.Second, f.state(t, res.JobID))
	<-done
	if werr != nil {
		t.Fatal(werr)
	}
	if final.State != record.StateSucceeded {
		t.Fatalf("final = %+v", final)
	}
	mu.Lock()
	if len(seen) == 0 || seen[0] != record.StateQueued || seen[len(seen)-1] != record.StateSucceeded {
		t.Errorf("progress saw %v, want queued first and succeeded last", seen)
	}
	mu.Unlock()
	var out struct{ Greeting string }
	if err := f.client.Result(ctx, res.JobID, &out); err != nil || out.Greeting != "hello Ann" {
		t.Fatalf("Result = %+v, %v", out, err)
	}
	lines, _, err := f.client.Logs(ctx, res.JobID)
	if err != nil || len(lines) == 0 || !strings.Contains(lines[0].Message, "greeting name=Ann") {
		t.Fatalf("Logs = %+v, %v", lines, err)
	}
}

func TestEnqueueValidation(t *testing.T) {
	store := testenv.Clients(t)
	c := nightshift.NewClient(store, nil)
	ctx := context.Background()
	cases := []struct {
		name, kind string
		args       json.RawMessage
		opts       *nightshift.EnqueueOptions
		field      string
		problem    string
	}{
		{"empty kind", "", nil, nil, "kind", "is required"},
		{"bad kind", "no spaces", nil, nil, "kind", "must be 1–128 characters"},
		{"bad args", "k", json.RawMessage(`{"a":`), nil, "args", "not valid JSON"},
		{"bad id", "k", nil, &nightshift.EnqueueOptions{JobID: "a/b"}, "job_id", "must be 1–128"},
		{"bad queue", "k", nil, &nightshift.EnqueueOptions{Queue: "Jobs"}, "queue", "lowercase"},
		{"both delays", "k", nil, &nightshift.EnqueueOptions{RunIn: time.Hour, RunAt: time.Now().Add(time.Hour)}, "run_at", "not both"},
		{"negative delay", "k", nil, &nightshift.EnqueueOptions{RunIn: -time.Second}, "run_at", "negative"},
		{"bad attempts", "k", nil, &nightshift.EnqueueOptions{MaxAttempts: -1}, "max_attempts", "1 or more"},
		{"bad callback", "k", nil, &nightshift.EnqueueOptions{CallbackURL: "ftp://x"}, "callback.url", "absolute https URL"},
		{"two callbacks", "k", nil, &nightshift.EnqueueOptions{CallbackURL: "https://x", CallbackQueue: "abc"}, "callback", "not both"},
		{"bad callback queue", "k", nil, &nightshift.EnqueueOptions{CallbackQueue: "a"}, "callback.queue", "3–63"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.EnqueueRaw(ctx, tc.kind, tc.args, tc.opts)
			var fe *envelope.FieldError
			if !errors.As(err, &fe) || fe.Field != tc.field || !strings.Contains(fe.Problem, tc.problem) {
				t.Fatalf("err = %v, want field %s with %q", err, tc.field, tc.problem)
			}
		})
	}
	// Meta within its per-entry bounds, but together over the queue message limit.
	big := map[string]string{}
	for i := 0; i < envelope.MaxMetaEntries; i++ {
		big[fmt.Sprintf("k%02d", i)] = strings.Repeat("a", envelope.MaxMetaValueBytes)
	}
	_, err := c.EnqueueRaw(ctx, "k", nil, &nightshift.EnqueueOptions{Meta: big})
	var se *envelope.SizeError
	if !errors.As(err, &se) || se.Limit != envelope.MaxMessageBytes {
		t.Fatalf("oversized envelope: err = %v, want *envelope.SizeError", err)
	}
	// Nothing was sent by any of the refused calls.
	if d, err := c.QueueDepths(ctx); err != nil || d[0].Messages != 0 {
		t.Fatalf("depths = %+v, %v; want an empty queue", d, err)
	}
}

func TestEnqueueIDDelayAndMany(t *testing.T) {
	store := testenv.Clients(t)
	c := nightshift.NewClient(store, nil)
	ctx := context.Background()
	res, err := c.Enqueue(ctx, greetArgs{"B"}, &nightshift.EnqueueOptions{JobID: "order-42", RunIn: time.Hour, DedupeKey: "order:42", Timeout: 90 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if res.JobID != "order-42" || res.RunAt.IsZero() || time.Until(res.RunAt) < 59*time.Minute {
		t.Fatalf("result = %+v", res)
	}
	// Delayed: the message is invisible.
	peek, err := testenv.QueueService(store).NewQueueClient(res.Queue).PeekMessages(ctx, nil)
	if err != nil || len(peek.Messages) != 0 {
		t.Fatalf("peek of a delayed job: %v %d messages, want none visible", err, len(peek.Messages))
	}
	st, err := c.Status(ctx, "order-42")
	if err != nil || st.State != record.StateQueued || !st.NextRunAt.Equal(res.RunAt) {
		t.Fatalf("status = %+v, %v", st, err)
	}
	_, err = c.Enqueue(ctx, greetArgs{"B"}, &nightshift.EnqueueOptions{JobID: "order-42"})
	var je *nightshift.JobExistsError
	if !errors.Is(err, nightshift.ErrJobExists) || !errors.As(err, &je) || je.State != record.StateQueued {
		t.Fatalf("second enqueue with the same id: %v", err)
	}

	params := []nightshift.EnqueueParams{
		{Args: greetArgs{"1"}},
		{Kind: "bad kind"},
		{Kind: "test.greet", RawArgs: json.RawMessage(`{"name":"3"}`)},
		{Args: greetArgs{"4"}, Opts: &nightshift.EnqueueOptions{JobID: "order-42"}},
	}
	out, err := c.EnqueueMany(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	if out[0].Err != nil || out[2].Err != nil || out[1].Err == nil || !errors.Is(out[3].Err, nightshift.ErrJobExists) {
		t.Fatalf("EnqueueMany = %+v", out)
	}
	d, err := c.QueueDepths(ctx)
	if err != nil || len(d) != 3 || d[0].Messages != 3 || d[0].PoisonMsgs != 0 || d[0].PoisonQueue != store.Layout.PoisonQueue(store.Layout.JobsQueue()) ||
		d[1].Queue != store.Layout.HighQueue() || d[2].Queue != store.Layout.LowQueue() || d[1].Messages != 0 {
		t.Fatalf("depths = %+v, %v; want 3 messages (1 delayed + 2)", d, err)
	}
}

func TestCancel(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()

	// Cancelled while queued: the delivery is skipped.
	q, err := f.client.Enqueue(ctx, greetArgs{"C"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	st, err := f.client.Cancel(ctx, q.JobID)
	if err != nil || st.State != record.StateCancelled || st.Kind != "test.greet" {
		t.Fatalf("cancel = %+v, %v", st, err)
	}
	f.pump.runUntil(ctx, 20*time.Second, func() bool {
		d, _ := f.client.QueueDepths(ctx)
		return len(d) == 3 && d[0].Messages == 0
	})
	if st, _ := f.client.Status(ctx, q.JobID); st.State != record.StateCancelled || st.Result != nil {
		t.Fatalf("after delivery: %+v, want still cancelled without result", st)
	}
	if _, err := f.client.Cancel(ctx, q.JobID); !errors.Is(err, nightshift.ErrTerminal) || !strings.Contains(err.Error(), "already cancelled") {
		t.Fatalf("second cancel: %v", err)
	}

	// Cancelled while running: the worker's context is cancelled.
	r, err := f.client.Enqueue(ctx, blockArgs{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	pctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		for pctx.Err() == nil {
			if f.pump.deliverOnce(pctx, nightshift.FunctionRunJob, f.store.Layout.JobsQueue()) == 0 {
				time.Sleep(30 * time.Millisecond)
			}
		}
	}()
	select {
	case <-f.started:
	case <-time.After(20 * time.Second):
		t.Fatal("blocking job did not start")
	}
	testenv.WaitFor(t, 10*time.Second, "the job to end", func() bool {
		st, err := f.client.Status(ctx, r.JobID)
		return err == nil && st.State == record.StateRunning
	})
	if _, err := f.client.Cancel(ctx, r.JobID); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	final, err := f.client.Wait(wctx, r.JobID, nil)
	if err != nil || final.State != record.StateCancelled || final.Attempt != 1 {
		t.Fatalf("final = %+v, %v", final, err)
	}

	// Cancelled after the handler picked the job up but before it was marked running:
	// the running status must not overwrite the cancellation.
	slow := newFixtureWith(t, 300*time.Millisecond)
	r2, err := slow.client.Enqueue(ctx, blockArgs{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for pctx.Err() == nil {
			if slow.pump.deliverOnce(pctx, nightshift.FunctionRunJob, slow.store.Layout.JobsQueue()) == 0 {
				time.Sleep(30 * time.Millisecond)
			}
		}
	}()
	select {
	case <-slow.started:
	case <-time.After(20 * time.Second):
		t.Fatal("blocking job did not start")
	}
	if st, err := slow.client.Cancel(ctx, r2.JobID); err != nil || st.Attempt != 1 {
		t.Fatalf("cancel of a picked-up job: %+v, %v", st, err)
	}
	final, err = slow.client.Wait(wctx, r2.JobID, nil)
	if err != nil || final.State != record.StateCancelled {
		t.Fatalf("picked-up job after cancel = %+v, %v", final, err)
	}
	// The worker's context is cancelled: the run ends.
	select {
	case <-slow.ended:
	case <-time.After(10 * time.Second):
		t.Fatal("the picked-up job kept running after it was cancelled")
	}
	if st, _ := slow.client.Status(ctx, r2.JobID); st.State != record.StateCancelled {
		t.Fatalf("status after the run ended = %+v", st)
	}

	// Already succeeded: cannot cancel.
	s, err := f.client.Enqueue(ctx, greetArgs{"D"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 20*time.Second, "the job to end", f.state(t, s.JobID))
	if _, err := f.client.Cancel(ctx, s.JobID); !errors.Is(err, nightshift.ErrTerminal) || !strings.Contains(err.Error(), "already succeeded") {
		t.Fatalf("cancel of a succeeded job: %v", err)
	}
}

func TestDeadLetterReplay(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	res, err := f.client.Enqueue(ctx, flakyArgs{FailLives: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	f.pump.runUntil(ctx, 30*time.Second, func() bool {
		_, err := f.client.DeadLetter(ctx, res.JobID)
		return err == nil
	})
	dls, err := f.client.DeadLetters(ctx)
	if err != nil || len(dls) != 1 || dls[0].JobID != res.JobID || dls[0].Reason != record.ReasonPermanentError {
		t.Fatalf("dead letters = %+v, %v", dls, err)
	}
	st, _ := f.client.Status(ctx, res.JobID)
	if st.State != record.StateDead {
		t.Fatalf("status = %+v, want dead", st)
	}
	if err := f.client.Result(ctx, res.JobID, new(any)); !errors.Is(err, nightshift.ErrNotFinished) {
		t.Fatalf("Result of a dead job: %v", err)
	}

	rep, err := f.client.Replay(ctx, res.JobID)
	if err != nil {
		t.Fatal(err)
	}
	if rep.JobID != res.JobID || rep.Replay != 1 {
		t.Fatalf("replay = %+v", rep)
	}
	st, _ = f.client.Status(ctx, res.JobID)
	if st.State != record.StateQueued || st.Replay != 1 {
		t.Fatalf("status after replay = %+v, want queued life 1", st)
	}
	dl, _ := f.client.DeadLetter(ctx, res.JobID)
	if dl.Replays != 1 || dl.ReplayedAt.IsZero() {
		t.Fatalf("record after replay = %+v", dl)
	}
	f.pump.runUntil(ctx, 30*time.Second, f.state(t, res.JobID))
	var out struct{ Life int }
	if err := f.client.Result(ctx, res.JobID, &out); err != nil || out.Life != 1 {
		t.Fatalf("result after replay = %+v, %v", out, err)
	}
	// The job is no longer dead: replaying the record again would run it again.
	if _, err := f.client.Replay(ctx, res.JobID); !errors.Is(err, nightshift.ErrNotDead) || !strings.Contains(err.Error(), "is succeeded (life 1)") {
		t.Fatalf("replay of a job that succeeded after its replay: %v", err)
	}
	// A job that dies again in its new life can be replayed again, to a later life.
	twice, err := f.client.Enqueue(ctx, flakyArgs{FailLives: 2}, nil)
	if err != nil {
		t.Fatal(err)
	}
	dead := func() bool {
		st, err := f.client.Status(ctx, twice.JobID)
		return err == nil && st.State == record.StateDead
	}
	f.pump.runUntil(ctx, 30*time.Second, dead)
	if _, err := f.client.Replay(ctx, twice.JobID); err != nil {
		t.Fatal(err)
	}
	f.pump.runUntil(ctx, 30*time.Second, func() bool {
		d, err := f.client.DeadLetter(ctx, twice.JobID)
		return dead() && err == nil && d.Envelope.Replay == 1
	})
	if rep, err := f.client.Replay(ctx, twice.JobID); err != nil || rep.Replay != 2 {
		t.Fatalf("replay after the second death = %+v, %v", rep, err)
	}
	f.pump.runUntil(ctx, 30*time.Second, f.state(t, twice.JobID))
	if st, _ := f.client.Status(ctx, twice.JobID); st.State != record.StateSucceeded || st.Replay != 2 {
		t.Fatalf("after the second replay: %+v", st)
	}
	if _, err := f.client.Replay(ctx, "no-such-job"); !errors.Is(err, nightshift.ErrNotFound) {
		t.Fatalf("replay of a missing record: %v", err)
	}
}

func TestListJobsResultBlobAndWaitTimeout(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	big, err := f.client.Enqueue(ctx, bigArgs{Size: 10000}, nil)
	if err != nil {
		t.Fatal(err)
	}
	small, err := f.client.Enqueue(ctx, greetArgs{"E"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	pending, err := f.client.Enqueue(ctx, greetArgs{"F"}, &nightshift.EnqueueOptions{RunIn: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	f.pump.runUntil(ctx, 30*time.Second, func() bool { return f.state(t, big.JobID)() && f.state(t, small.JobID)() })
	ct, data, err := f.client.ResultBytes(ctx, big.JobID)
	if err != nil || ct != "text/plain" || len(data) != 10000 {
		t.Fatalf("ResultBytes = %q, %d bytes, %v", ct, len(data), err)
	}
	var raw []byte
	if err := f.client.Result(ctx, big.JobID, &raw); err != nil || len(raw) != 10000 {
		t.Fatalf("Result into *[]byte: %d, %v", len(raw), err)
	}
	var s string
	if err := f.client.Result(ctx, big.JobID, &s); err == nil || !strings.Contains(err.Error(), "not JSON") {
		t.Fatalf("Result of a text result into a string: %v", err)
	}

	all, err := f.client.ListJobs(ctx, nightshift.JobFilter{})
	if err != nil || len(all) != 3 {
		t.Fatalf("ListJobs = %d, %v", len(all), err)
	}
	succ, err := f.client.ListJobs(ctx, nightshift.JobFilter{State: record.StateSucceeded, Kind: "test.greet"})
	if err != nil || len(succ) != 1 || succ[0].JobID != small.JobID {
		t.Fatalf("ListJobs(succeeded, test.greet) = %+v, %v", succ, err)
	}
	queued, err := f.client.ListJobs(ctx, nightshift.JobFilter{State: record.StateQueued})
	if err != nil || len(queued) != 1 || queued[0].JobID != pending.JobID {
		t.Fatalf("ListJobs(queued) = %+v, %v", queued, err)
	}
	if l, err := f.client.ListJobs(ctx, nightshift.JobFilter{Limit: 2}); err != nil || len(l) != 2 {
		t.Fatalf("ListJobs(limit 2) = %d, %v", len(l), err)
	}
	if l, err := f.client.ListJobs(ctx, nightshift.JobFilter{Since: time.Now().Add(time.Hour)}); err != nil || len(l) != 0 {
		t.Fatalf("ListJobs(since the future) = %d, %v", len(l), err)
	}

	wctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	calls := 0
	_, err = f.client.Wait(wctx, pending.JobID, &nightshift.WaitOptions{Progress: func(*record.Status) { calls++ }})
	if !errors.Is(err, context.DeadlineExceeded) || calls != 1 {
		t.Fatalf("Wait on a pending job: %v (progress calls %d, want 1)", err, calls)
	}
	if _, err := f.client.Status(ctx, "missing"); !errors.Is(err, nightshift.ErrNotFound) {
		t.Fatalf("Status(missing) = %v", err)
	}
}

// nodeProducer is the docs/other-languages.md Node.js producer: @azure/storage-queue with
// its default options (raw message text), one envelope as JSON, and the same envelope
// base64-encoded (the Functions host's default encoding, also accepted).
const nodeProducer = `
const { QueueServiceClient } = require("@azure/storage-queue");

async function main() {
  const [connectionString, queueName, jobId] = process.argv.slice(2);
  const queue = QueueServiceClient.fromConnectionString(connectionString).getQueueClient(queueName);
  const envelope = { kind: "test.greet", job_id: jobId, args: { name: "node" }, meta: { from: "node" } };
  const sent = await queue.sendMessage(JSON.stringify(envelope));
  const b64 = { ...envelope, job_id: jobId + "-b64" };
  await queue.sendMessage(Buffer.from(JSON.stringify(b64)).toString("base64"));
  console.log(JSON.stringify({ messageId: sent.messageId }));
}

main().catch((err) => { console.error(err.message); process.exit(1); });
`

func TestNodeProducerWithDefaultOptions(t *testing.T) {
	modules := filepath.Join(testenv.RepoRoot(), "local", "node_modules")
	if _, err := os.Stat(filepath.Join(modules, "@azure", "storage-queue")); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("@azure/storage-queue is not installed under local/node_modules (npm ci --prefix local): %v", err)
		}
		t.Skipf("@azure/storage-queue not installed: %v", err)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node not found")
	}
	f := newFixture(t)
	cs := testenv.ConnectionString(t)
	script := filepath.Join(t.TempDir(), "enqueue.js")
	if err := os.WriteFile(script, []byte(nodeProducer), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, script, cs, f.store.Layout.JobsQueue(), "from-node")
	cmd.Env = append(os.Environ(), "NODE_PATH="+modules)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node producer: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "messageId") {
		t.Fatalf("node producer printed %q", out)
	}
	f.pump.runUntil(context.Background(), 30*time.Second, func() bool {
		return f.state(t, "from-node")() && f.state(t, "from-node-b64")()
	})
	for _, id := range []string{"from-node", "from-node-b64"} {
		st, err := f.client.Status(context.Background(), id)
		if err != nil || st.State != record.StateSucceeded || st.Meta["from"] != "node" {
			t.Fatalf("job %s: %+v, %v", id, st, err)
		}
		var res struct{ Greeting string }
		if err := f.client.Result(context.Background(), id, &res); err != nil || res.Greeting != "hello node" {
			t.Fatalf("result of %s: %+v, %v", id, res, err)
		}
	}
}

func TestClaimCheckAndDedupe(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	// Args over the claim-check threshold travel in Blob; the job still gets them.
	name := strings.Repeat("n", nightshift.ClaimCheckThreshold+1000)
	res, err := f.client.Enqueue(ctx, greetArgs{Name: name}, nil)
	if err != nil {
		t.Fatal(err)
	}
	peek, _ := testenv.QueueService(f.store).NewQueueClient(res.Queue).PeekMessage(ctx, nil)
	env, err := envelope.Decode([]byte(*peek.Messages[0].MessageText))
	if err != nil || env.ArgsRef == nil || env.Args != nil || env.ArgsRef.Size <= int64(nightshift.ClaimCheckThreshold) {
		t.Fatalf("envelope of a big job: %+v, %v; want args_ref and no args", env, err)
	}
	f.pump.runUntil(ctx, 30*time.Second, f.state(t, res.JobID))
	var out struct{ Greeting string }
	if err := f.client.Result(ctx, res.JobID, &out); err != nil || out.Greeting != "hello "+name {
		t.Fatalf("result of a claim-checked job: %d bytes, %v", len(out.Greeting), err)
	}

	// A dedupe key is held while its job is pending, and free once it ended.
	first, err := f.client.Enqueue(ctx, greetArgs{"1"}, &nightshift.EnqueueOptions{DedupeKey: "report:42"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.client.Enqueue(ctx, greetArgs{"2"}, &nightshift.EnqueueOptions{DedupeKey: "report:42"})
	var de *nightshift.DuplicateJobError
	if !errors.Is(err, nightshift.ErrDuplicate) || !errors.As(err, &de) || de.JobID != first.JobID {
		t.Fatalf("second job with the key: %v, want a duplicate held by %s", err, first.JobID)
	}
	if _, err := f.client.Enqueue(ctx, greetArgs{"3"}, &nightshift.EnqueueOptions{DedupeKey: "report:43"}); err != nil {
		t.Fatalf("another key: %v", err)
	}
	f.pump.runUntil(ctx, 30*time.Second, f.state(t, first.JobID))
	if _, err := f.client.Enqueue(ctx, greetArgs{"4"}, &nightshift.EnqueueOptions{DedupeKey: "report:42"}); err != nil {
		t.Fatalf("the key after its job ended: %v", err)
	}
}

func TestEnqueueSucceedsWithoutStatusContainer(t *testing.T) {
	store := testenv.Clients(t)
	ctx := context.Background()
	if _, err := testenv.BlobService(store).DeleteContainer(ctx, store.Layout.StatusContainer(), nil); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	c := nightshift.NewClient(store, &nightshift.ClientOptions{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	res, err := c.Enqueue(ctx, greetArgs{"G"}, nil)
	if err != nil {
		t.Fatalf("enqueue with the status container missing: %v (the message is on the queue; the status is best effort)", err)
	}
	if d, _ := c.QueueDepths(ctx); d[0].Messages != 1 {
		t.Fatalf("depths = %+v", d)
	}
	// The status container is one of nightshift's own: the first write makes it again, so
	// the queued status is there (before, it was skipped with a warning).
	if st, err := c.Status(ctx, res.JobID); err != nil || st.State != record.StateQueued {
		t.Fatalf("queued status %+v, %v; log %q", st, err, logs.String())
	}
}
