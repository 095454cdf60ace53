package worker_test

import (
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/nightshift-jobs/nightshift/internal/testenv"
	"github.com/nightshift-jobs/nightshift/worker"
)

// BenchmarkWorkers compares the throughput of no-op jobs drained from a pre-filled jobs
// queue by 1, 2 and 4 worker processes with the local Functions host (the same handler
// binary as its custom handler), all on one Azurite of its own with a disk store, in one
// run. Each consumer has the repository's host.json (in flight per queue: batchSize 16 +
// newBatchThreshold 8). The rate is measured from the first job run to the last, so start-up
// is left out. Run it alone (docs/benchmarks.md):
//
//	go test -run '^$' -bench Workers -benchtime 1x -timeout 30m ./worker/
func BenchmarkWorkers(b *testing.B) {
	cs := testenv.DiskAzurite(b)
	const jobs = 1000
	rates := map[string]float64{}
	for _, c := range []struct {
		name    string
		workers int
	}{{"localhost", 0}, {"workers=1", 1}, {"workers=2", 2}, {"workers=4", 4}} {
		b.Run(c.name, func(b *testing.B) {
			for range b.N {
				rate := benchDrain(b, cs, jobs, c.workers)
				rates[c.name] = rate
				b.ReportMetric(rate, "jobs/s")
				b.ReportMetric(0, "ns/op")
			}
		})
	}
	if base := rates["localhost"]; base > 0 {
		b.Logf("%d jobs: local host %.0f jobs/s; 1 worker %.0f (×%.2f), 2 workers %.0f (×%.2f), 4 workers %.0f (×%.2f)", jobs, base,
			rates["workers=1"], rates["workers=1"]/base, rates["workers=2"], rates["workers=2"]/base, rates["workers=4"], rates["workers=4"]/base)
	}
}

// benchDrain pre-fills jobs no-op jobs on a fresh prefix, starts the consumers (workers
// processes, or the local host when 0) and returns jobs/s from the first run to the last.
func benchDrain(b *testing.B, cs string, jobs, workers int) float64 {
	b.Helper()
	f := newFleet(b, cs, worker.DefaultHostJSON)
	var wg sync.WaitGroup
	next := make(chan int)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				f.enqueue("test.noop", fmt.Sprintf(`{"n":%d}`, i), "")
			}
		}()
	}
	for i := range jobs {
		next <- i
	}
	close(next)
	wg.Wait()
	ran := func() int { e, _ := os.ReadDir(f.runs); return len(e) }
	b.ResetTimer()
	var ps []*process
	if workers == 0 {
		f.startLocalHost()
	}
	for range workers {
		ps = append(ps, f.startWorker([]string{"--no-timers"}))
	}
	deadline := time.Now().Add(20 * time.Minute)
	var first time.Time
	for n := ran(); n < jobs; n = ran() {
		if first.IsZero() && n > 0 {
			first = time.Now()
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d jobs ran within 20 minutes", n, jobs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	rate := float64(jobs) / time.Since(first).Seconds()
	b.StopTimer()
	for _, p := range ps {
		p.term()
	}
	for _, p := range ps {
		if code := p.wait(); code != 0 {
			b.Errorf("worker %d exit code %d", p.pid(), code)
		}
	}
	entries, _ := os.ReadDir(f.runs)
	multi := 0
	for _, e := range entries {
		if len(f.runPIDs(e.Name())) > 1 {
			multi++
		}
	}
	if multi > 0 {
		b.Logf("%d jobs ran more than once", multi)
	}
	return rate
}
