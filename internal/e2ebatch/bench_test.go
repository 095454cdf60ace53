package main

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/internal/testenv"
	"github.com/nightshift-jobs/nightshift/storage"
)

// EnvBenchN sets the number of jobs of BenchmarkFanOut (default 10000).
const EnvBenchN = "E2E_BENCH_N"

// EnvBenchIndependentFirst, when set, makes BenchmarkFanOut run the independent jobs before
// the batch.
const EnvBenchIndependentFirst = "E2E_BENCH_INDEPENDENT_FIRST"

// diskAzurite starts an Azurite that keeps its data on disk (--location), as a deployed
// account would, instead of the tests' in-memory one. It dies with the test process.
func diskAzurite(b *testing.B) string { return testenv.DiskAzurite(b) }

// countingTransport counts storage requests (client and host side).
type countingTransport = CountingTransport

// handlerCalls sums the storage calls the handler processes reported.
func (a *app) handlerCalls() int64 {
	entries, _ := os.ReadDir(a.runs)
	var n int64
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "calls-") {
			b, _ := os.ReadFile(filepath.Join(a.runs, e.Name()))
			v, _ := strconv.ParseInt(string(b), 10, 64)
			n += v
		}
	}
	return n
}

// BenchmarkFanOut compares, in one run against a disk Azurite through the local host,
// a batch of N no-op children with a finalizer against N independent no-op jobs: wall
// time from the first enqueue to the last job's end, and storage calls per job split by
// who makes them (client, handler, host). Run it with
//
//	go test -run '^$' -bench FanOut -benchtime 1x ./internal/e2ebatch
//
// (E2E_BENCH_N changes N; default 10000).
func BenchmarkFanOut(b *testing.B) {
	n := 10000
	if v := os.Getenv(EnvBenchN); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			b.Fatalf("%s=%q: want a positive number", EnvBenchN, v)
		}
	}
	cs := diskAzurite(b)
	for b.Loop() {
		a := newApp(b, cs)
		a.settings[EnvCountCalls] = "1"
		clientCT := &countingTransport{Next: http.DefaultClient}
		hostCT := &countingTransport{Next: http.DefaultClient}
		cstore, err := storage.FromEnv(func(k string) string { return a.settings[k] }, &storage.Options{Transport: clientCT})
		must(b, err)
		counted := nightshift.NewClient(cstore, &nightshift.ClientOptions{Concurrency: 32})
		a.runWith(&storage.Options{Transport: hostCT})
		ctx := context.Background()
		jobsQ := testenv.QueueService(a.store).NewQueueClient(a.store.Layout.JobsQueue())
		testenv.WaitFor(b, time.Minute, "the handler", func() bool { return len(a.pids()) > 0 && a.handlerCalls() >= 0 })
		time.Sleep(time.Second)

		type phase struct {
			wall                 time.Duration
			client, handler, hst int64
		}
		measure := func(run func(), done func() bool) phase {
			c0, h0, s0 := clientCT.Calls.Load(), a.handlerCalls(), hostCT.Calls.Load()
			t0 := time.Now()
			run()
			testenv.WaitFor(b, 30*time.Minute, "the phase's end", done)
			wall := time.Since(t0)
			time.Sleep(500 * time.Millisecond) // let the handler's counter file catch up
			return phase{wall, clientCT.Calls.Load() - c0, a.handlerCalls() - h0, hostCT.Calls.Load() - s0}
		}
		children := make([]nightshift.EnqueueParams, n)
		for i := range children {
			children[i] = nightshift.EnqueueParams{Args: NoopArgs{}}
		}
		var bi *nightshift.BatchInfo
		runBatch := func() phase {
			p := measure(func() {
				var err error
				bi, err = counted.StartBatch(ctx, nightshift.BatchParams{Children: children, Finalizer: &nightshift.EnqueueParams{Args: CountArgs{}}})
				must(b, err)
			}, func() bool {
				st := a.status(bi.FinalizerJobID)
				return st != nil && st.State.Terminal()
			})
			var fin map[string]int
			must(b, a.client.Result(ctx, bi.FinalizerJobID, &fin))
			if fin["succeeded"] != n {
				b.Fatalf("finalizer saw %v, want %d succeeded", fin, n)
			}
			return p
		}
		runIndependent := func() phase {
			return measure(func() {
				for _, r := range must2(counted.EnqueueMany(ctx, children)) {
					must(b, r.Err)
				}
			}, func() bool {
				p, err := jobsQ.GetProperties(ctx, nil)
				return err == nil && *p.ApproximateMessagesCount == 0
			})
		}
		// The account fills up as the run goes on, so the phase that runs second works
		// against more data; EnvBenchIndependentFirst swaps the order to check the bias.
		var batch, indep phase
		if os.Getenv(EnvBenchIndependentFirst) != "" {
			indep, batch = runIndependent(), runBatch()
		} else {
			batch, indep = runBatch(), runIndependent()
		}
		per := func(p phase) (float64, float64, float64) {
			return float64(p.client) / float64(n), float64(p.handler) / float64(n), float64(p.hst) / float64(n)
		}
		bc, bh, bs := per(batch)
		ic, ih, is := per(indep)
		b.ReportMetric(batch.wall.Seconds(), "batch-s")
		b.ReportMetric(indep.wall.Seconds(), "independent-s")
		b.ReportMetric(batch.wall.Seconds()/indep.wall.Seconds(), "batch/independent")
		b.ReportMetric(bc+bh+bs, "batch-calls/job")
		b.ReportMetric(ic+ih+is, "independent-calls/job")
		b.Logf("N=%d batch: %s, calls/child client %.2f handler %.2f host %.2f (total %.2f)", n, batch.wall.Round(time.Millisecond), bc, bh, bs, bc+bh+bs)
		b.Logf("N=%d independent: %s, calls/job client %.2f handler %.2f host %.2f (total %.2f)", n, indep.wall.Round(time.Millisecond), ic, ih, is, ic+ih+is)
	}
}
