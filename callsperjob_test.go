package nightshift

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/nightshift-jobs/nightshift/hostproto"
	"github.com/nightshift-jobs/nightshift/internal/store/storetest"
	"github.com/nightshift-jobs/nightshift/internal/testenv"
	"github.com/nightshift-jobs/nightshift/storage"
)

// BenchmarkStorageCallsPerJob counts the storage calls of successful quick jobs, by who
// makes them: the producer (a raw message put, or the Go client's Enqueue), the host
// (receives of up to 16 messages, as the host does with batchSize 16, and deletes) and the handler. It plays the host itself:
// receive a batch, run each message through the handler, delete it. Calls are counted at
// the boundary (storetest.Counting) and as HTTP requests at the SDK transport (on Azurite:
// what Azurite's request log shows from the Go side). docs/benchmarks.md "Storage calls
// per job" has the figures and the command.
func BenchmarkStorageCallsPerJob(b *testing.B) {
	for _, producer := range []string{"raw", "client"} {
		b.Run(producer, func(b *testing.B) { benchCallsPerJob(b, producer) })
	}
}

func benchCallsPerJob(b *testing.B, producer string) {
	ctx := context.Background()
	ct := &countingTransport{next: http.DefaultClient}
	base, err := storage.FromEnv(testenv.Env(b), &storage.Options{Transport: ct})
	if err != nil {
		b.Fatal(err)
	}
	if err := base.Ensure(ctx); err != nil {
		b.Fatal(err)
	}
	count := storetest.NewCounting(base.Store())
	c := base.WithStore(count)
	reg := NewRegistry()
	AddWorkerFunc(reg, func(ctx context.Context, j *Job[addArgs]) (any, error) { return j.Args.A + j.Args.B, nil }, nil)
	h := NewHandler(reg, c, &HandlerOptions{Logger: slog.New(slog.DiscardHandler)})
	cl := NewClient(c, nil)
	queue := c.Layout.JobsQueue()
	snap := func() (int, int) {
		ct.mu.Lock()
		n := len(ct.calls)
		ct.mu.Unlock()
		return count.Total(), n
	}
	// Warm up: the handler's per-process reads (pauses, cancel journal) are not per job.
	runBatch := func(want int) (host, hostHTTP, handler, handlerHTTP int) {
		done := 0
		for done < want {
			b0, h0 := snap()
			msgs, err := c.Store().Receive(ctx, queue, 16, time.Minute)
			if err != nil {
				b.Fatal(err)
			}
			b1, h1 := snap()
			host, hostHTTP = host+b1-b0, hostHTTP+h1-h0
			for _, m := range msgs {
				b0, h0 = snap()
				out := h.exec.runJob(ctx, delivery{Queue: queue, Body: []byte(m.Text),
					Meta: hostproto.QueueMeta{ID: m.ID, DequeueCount: int(m.DequeueCount), InsertionTime: m.InsertionTime}})
				if out.Outcome != "succeeded" {
					b.Fatalf("outcome %+v", out)
				}
				b1, h1 = snap()
				handler, handlerHTTP = handler+b1-b0, handlerHTTP+h1-h0
				if err := c.Store().DeleteMessage(ctx, queue, m.ID, m.PopReceipt); err != nil {
					b.Fatal(err)
				}
				b0, h0 = snap()
				host, hostHTTP = host+b0-b1, hostHTTP+h0-h1
				done++
			}
		}
		return
	}
	produce := func(n int) (calls, httpCalls int) {
		b0, h0 := snap()
		for i := range n {
			var err error
			if producer == "raw" {
				id := fmt.Sprintf("calls-%d-%d", time.Now().UnixNano(), i)
				_, err = c.Store().Enqueue(ctx, queue, `{"job_id":"`+id+`","kind":"test.add","args":{"A":1,"B":2}}`, 0, 0)
			} else {
				_, err = cl.EnqueueRaw(ctx, "test.add", json.RawMessage(`{"A":1,"B":2}`), nil)
			}
			if err != nil {
				b.Fatal(err)
			}
		}
		b1, h1 := snap()
		return b1 - b0, h1 - h0
	}
	produce(1)
	runBatch(1)
	const perRound = 64
	var prod, prodHTTP, host, hostHTTP, handler, handlerHTTP, jobs int
	for b.Loop() {
		p, ph := produce(perRound)
		ho, hh, ha, hah := runBatch(perRound)
		prod, prodHTTP, host, hostHTTP, handler, handlerHTTP = prod+p, prodHTTP+ph, host+ho, hostHTTP+hh, handler+ha, handlerHTTP+hah
		jobs += perRound
	}
	per := func(n int) float64 { return float64(n) / float64(jobs) }
	b.ReportMetric(per(prod), "producer-calls/job")
	b.ReportMetric(per(host), "host-calls/job")
	b.ReportMetric(per(handler), "handler-calls/job")
	b.ReportMetric(per(host+handler), "host+handler-calls/job")
	b.ReportMetric(per(prodHTTP+hostHTTP+handlerHTTP), "http-requests/job")
}
