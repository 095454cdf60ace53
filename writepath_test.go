package nightshift

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nightshift-jobs/nightshift/envelope"
	"github.com/nightshift-jobs/nightshift/hostproto"
	"github.com/nightshift-jobs/nightshift/internal/testenv"
	"github.com/nightshift-jobs/nightshift/record"
	"github.com/nightshift-jobs/nightshift/storage"
)

// The races of the write path (docs/semantics.md, "The write path"): a first delivery
// runs without reading its status and records its end with one conditional write. Each
// test runs on Azurite and on the memory driver.

type gateArgs struct {
	// Hold makes a first delivery's run wait for the gate of its test.
	Hold bool `json:"hold,omitempty"`
}

func (gateArgs) Kind() string { return "floor.gate" }

// writePathEnv is a handler and a client on one store, with a worker that counts its runs
// and, for held jobs, signals its start and waits for release.
type writePathEnv struct {
	t       *testing.T
	store   *storage.Clients
	x       *executor
	client  *Client
	mu      sync.Mutex
	runs    int
	started chan struct{}
	release chan struct{}
}

func eachWritePathStore(t *testing.T, test func(t *testing.T, w *writePathEnv)) {
	for _, name := range []string{"azurite", "memory"} {
		t.Run(name, func(t *testing.T) {
			var c *storage.Clients
			if name == "azurite" {
				c = testenv.Clients(t)
			} else {
				var err error
				if c, err = storage.NewMemory("", time.Now); err != nil {
					t.Fatal(err)
				}
			}
			if err := c.Ensure(context.Background()); err != nil {
				t.Fatal(err)
			}
			w := &writePathEnv{t: t, store: c, client: NewClient(c, nil), started: make(chan struct{}, 8), release: make(chan struct{})}
			reg := NewRegistry()
			AddWorkerFunc(reg, func(ctx context.Context, j *Job[gateArgs]) (any, error) {
				w.mu.Lock()
				w.runs++
				w.mu.Unlock()
				if j.Args.Hold && j.DequeueCount == 1 {
					w.started <- struct{}{}
					<-w.release
				}
				return "done", nil
			}, &WorkerOptions{MaxAttempts: 3, Backoff: ConstantBackoff(time.Millisecond)})
			AddWorkerFunc(reg, func(ctx context.Context, j *Job[failArgs]) (any, error) {
				w.mu.Lock()
				w.runs++
				w.mu.Unlock()
				if j.Attempt == 1 {
					return nil, errors.New("first attempt fails")
				}
				return "done", nil
			}, &WorkerOptions{MaxAttempts: 3, Backoff: ConstantBackoff(time.Millisecond)})
			w.x = NewHandler(reg, c, &HandlerOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}).exec
			test(t, w)
		})
	}
}

func (w *writePathEnv) runCount() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.runs
}

// enqueue enqueues through the client and returns the job id and its message body.
func (w *writePathEnv) enqueue(kind, args string, opts *EnqueueOptions) (string, []byte) {
	w.t.Helper()
	res, err := w.client.EnqueueRaw(context.Background(), kind, json.RawMessage(args), opts)
	if err != nil {
		w.t.Fatal(err)
	}
	return res.JobID, w.take(res.Queue, res.JobID)
}

// take receives the message of job id from queue, waiting for it to become visible (a
// retry's backoff rounds up to a second on the queue).
func (w *writePathEnv) take(queue, id string) []byte {
	w.t.Helper()
	for try := 0; try < 100; try++ {
		msgs, err := w.store.Store().Receive(context.Background(), queue, 32, time.Minute)
		if err != nil {
			w.t.Fatal(err)
		}
		for _, m := range msgs {
			if strings.Contains(m.Text, `"job_id":"`+id+`"`) {
				return []byte(m.Text)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	w.t.Fatalf("no message of job %s on %s", id, queue)
	return nil
}

func (w *writePathEnv) deliver(body []byte, dequeueCount int) outcome {
	return w.x.runJob(context.Background(), delivery{Queue: w.store.Layout.JobsQueue(), Body: body,
		Meta: hostproto.QueueMeta{ID: "m-" + time.Now().Format("150405.000000000"), DequeueCount: dequeueCount, InsertionTime: time.Now()}})
}

func (w *writePathEnv) status(id string) *record.Status {
	w.t.Helper()
	st, _, err := w.store.GetStatus(context.Background(), id)
	if err != nil {
		w.t.Fatal(err)
	}
	return st
}

// The client's message carries the ETag of the queued status it wrote first.
func TestWritePathMessageCarriesQueuedETag(t *testing.T) {
	eachWritePathStore(t, func(t *testing.T, w *writePathEnv) {
		id, body := w.enqueue("floor.gate", `{}`, nil)
		env, err := envelope.Decode(body)
		if err != nil {
			t.Fatal(err)
		}
		_, etag, err := w.store.GetStatus(context.Background(), id)
		if err != nil || env.StatusETag == "" || env.StatusETag != string(etag) {
			t.Fatalf("status_etag %q, queued record %q, %v", env.StatusETag, etag, err)
		}
		if out := w.deliver(body, 1); out.Outcome != "succeeded" {
			t.Fatalf("outcome %+v", out)
		}
		if st := w.status(id); st.State != record.StateSucceeded || st.Attempt != 1 {
			t.Fatalf("status %+v", st)
		}
	})
}

// A job cancelled just before its first delivery does not start once the handler's copy
// of the cancel journal is fresh; within CancelJournalCheck of a copy read before the cancel it
// may run, and then its end is not recorded: the status stays cancelled.
func TestWritePathCancelJustBeforeStart(t *testing.T) {
	eachWritePathStore(t, func(t *testing.T, w *writePathEnv) {
		// A fresh journal copy: the job does not run.
		id, body := w.enqueue("floor.gate", `{}`, nil)
		if _, err := w.client.Cancel(context.Background(), id); err != nil {
			t.Fatal(err)
		}
		if out := w.deliver(body, 1); out.Outcome != "skipped" || w.runCount() != 0 {
			t.Fatalf("outcome %+v, runs %d", out, w.runCount())
		}
		// The copy was read before this cancel (within CancelJournalCheck): the job runs, but
		// its end is refused and the status stays cancelled.
		id2, body2 := w.enqueue("floor.gate", `{}`, nil)
		if _, err := w.client.Cancel(context.Background(), id2); err != nil {
			t.Fatal(err)
		}
		out := w.deliver(body2, 1)
		if w.runCount() == 1 && out.Outcome != "skipped" {
			t.Fatalf("a cancelled job that ran recorded its end: %+v", out)
		}
		if st := w.status(id2); st.State != record.StateCancelled {
			t.Fatalf("status went backwards: %+v", st)
		}
		// Once the copy is older than CancelJournalCheck, the journal is read again.
		w.x.cancels.mu.Lock()
		w.x.cancels.read = time.Time{}
		w.x.cancels.mu.Unlock()
		runs := w.runCount()
		if out := w.deliver(body2, 1); out.Outcome != "skipped" || w.runCount() != runs {
			t.Fatalf("outcome %+v, runs %d (was %d)", out, w.runCount(), runs)
		}
	})
}

// A redelivery while the first delivery still runs: the redelivery reads the status,
// records its start and finishes first; the first delivery's end write fails its
// condition, re-reads and finds the job succeeded: not recorded, not backwards.
func TestWritePathRedeliveryWhileRunning(t *testing.T) {
	eachWritePathStore(t, func(t *testing.T, w *writePathEnv) {
		id, body := w.enqueue("floor.gate", `{"hold":true}`, nil)
		first := make(chan outcome, 1)
		go func() { first <- w.deliver(body, 1) }()
		<-w.started
		if out := w.deliver(body, 2); out.Outcome != "succeeded" {
			t.Fatalf("redelivery %+v", out)
		}
		done := w.status(id)
		close(w.release)
		if out := <-first; out.Outcome != "skipped" || !strings.Contains(strings.Join(out.Logs, ""), "already succeeded") {
			t.Fatalf("first delivery %+v", out)
		}
		st := w.status(id)
		if st.State != record.StateSucceeded || !st.FinishedAt.Equal(done.FinishedAt) || st.Runs != 1 || w.runCount() != 2 {
			t.Fatalf("status %+v (was %+v), runs %d", st, done, w.runCount())
		}
	})
}

// Two first deliveries of one message (the host delivered it twice) finish at once: one
// end write wins its condition; the other re-reads, finds the job succeeded and records
// nothing.
func TestWritePathTwoDeliveriesFinishAtOnce(t *testing.T) {
	for _, producer := range []string{"client", "raw"} {
		t.Run(producer, func(t *testing.T) {
			eachWritePathStore(t, func(t *testing.T, w *writePathEnv) {
				id, body := "two-at-once", []byte(`{"job_id":"two-at-once","kind":"floor.gate","args":{"hold":true}}`)
				if producer == "client" {
					id, body = w.enqueue("floor.gate", `{"hold":true}`, nil)
				}
				outs := make(chan outcome, 2)
				for range 2 {
					go func() { outs <- w.deliver(body, 1) }()
				}
				<-w.started
				<-w.started
				close(w.release)
				got := map[string]int{}
				for range 2 {
					got[(<-outs).Outcome]++
				}
				if got["succeeded"] != 1 || got["skipped"] != 1 {
					t.Fatalf("outcomes %v", got)
				}
				if st := w.status(id); st.State != record.StateSucceeded || string(st.Result.JSON) != `"done"` {
					t.Fatalf("status %+v", st)
				}
			})
		})
	}
}

// A retry's message arrives with dequeue count 1 too: attempt 2 reads the status first
// (it is not a first delivery of attempt 1) and carries no status_etag; cancelled while
// retrying, it does not start.
func TestWritePathRetryAttemptWithDequeueCountOne(t *testing.T) {
	eachWritePathStore(t, func(t *testing.T, w *writePathEnv) {
		for _, cancel := range []bool{false, true} {
			id, body := w.enqueue("test.fail", `{"msg":"x"}`, nil)
			if out := w.deliver(body, 1); out.Outcome != "retrying" {
				t.Fatalf("attempt 1 %+v", out)
			}
			retry := w.take(w.store.Layout.JobsQueue(), id)
			env, err := envelope.Decode(retry)
			if err != nil || env.Attempt != 2 || env.StatusETag != "" {
				t.Fatalf("retry %s: %v", retry, err)
			}
			if cancel {
				if _, err := w.client.Cancel(context.Background(), id); err != nil {
					t.Fatal(err)
				}
			}
			runs := w.runCount()
			out := w.deliver(retry, 1)
			st := w.status(id)
			switch {
			case cancel && (out.Outcome != "skipped" || w.runCount() != runs || st.State != record.StateCancelled):
				t.Fatalf("cancelled retry ran: %+v, status %+v", out, st)
			case !cancel && (out.Outcome != "succeeded" || st.State != record.StateSucceeded || st.Attempt != 2):
				t.Fatalf("retry %+v, status %+v", out, st)
			}
		}
	})
}

// A duplicate enqueue of one id: the client refuses it with the create-only queued write
// (no read unless it conflicts); a raw producer's second message runs, but its end is not
// recorded over the first.
func TestWritePathDuplicateEnqueue(t *testing.T) {
	eachWritePathStore(t, func(t *testing.T, w *writePathEnv) {
		id, body := w.enqueue("floor.gate", `{}`, &EnqueueOptions{JobID: "dup-1"})
		_, err := w.client.EnqueueRaw(context.Background(), "floor.gate", json.RawMessage(`{}`), &EnqueueOptions{JobID: id})
		var je *JobExistsError
		if !errors.As(err, &je) || je.State != record.StateQueued {
			t.Fatalf("duplicate id: %v", err)
		}
		if out := w.deliver(body, 1); out.Outcome != "succeeded" {
			t.Fatalf("%+v", out)
		}
		first := w.status(id)
		raw := []byte(`{"job_id":"` + id + `","kind":"floor.gate","args":{}}`)
		if out := w.deliver(raw, 1); out.Outcome != "skipped" || !strings.Contains(strings.Join(out.Logs, ""), "already succeeded") {
			t.Fatalf("raw duplicate %+v", out)
		}
		if st := w.status(id); !st.FinishedAt.Equal(first.FinishedAt) || st.State != record.StateSucceeded {
			t.Fatalf("status %+v, was %+v", st, first)
		}
		// The same for a raw producer's own id, sent twice.
		raw = []byte(`{"job_id":"dup-raw","kind":"floor.gate","args":{}}`)
		if out := w.deliver(raw, 1); out.Outcome != "succeeded" {
			t.Fatalf("%+v", out)
		}
		if out := w.deliver(raw, 1); out.Outcome != "skipped" {
			t.Fatalf("raw duplicate %+v", out)
		}
	})
}
