package funchost

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azqueue/v2"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/internal/appfolder"
	"github.com/nightshift-jobs/nightshift/internal/testenv"
	jobrecord "github.com/nightshift-jobs/nightshift/record"
	"github.com/nightshift-jobs/nightshift/storage"
)

// BenchmarkLocalHost compares end-to-end throughput of no-op jobs through the local host,
// the nightshift handler (e2ehandler: real handler code) and Azurite, with a raw SDK loop
// on the same Azurite in the same run: receive 16 at a time, upload a result blob, delete,
// at most 24 in flight (the host's batchSize + newBatchThreshold from host.json).
//
// Depth "0" enqueues jobs while the consumers run (the queue stays shallow); depths 1000
// and 5000 pre-fill the queue and measure draining it. The pipeline's clock leaves out
// the host's and the handler's start-up (see benchHost). Each depth gets its own Azurite
// with a disk location (in-memory mode stalls under churn; see docs/benchmarks.md), and
// runs -localhost.rounds rounds of raw loop and pipeline, alternating which goes first; a
// round's ratio compares its two drains, and the depth's ratio is the median of its rounds,
// so one Azurite stall during one drain does not decide the figure. Run it alone:
//
//	go test -run '^$' -bench LocalHost -benchtime 1x -timeout 60m ./internal/funchost/
func BenchmarkLocalHost(b *testing.B) {
	depths, err := parseDepths(*benchDepths)
	if err != nil {
		b.Fatal(err)
	}
	for _, depth := range depths {
		b.Run(fmt.Sprintf("depth=%d", depth), func(b *testing.B) { benchDepth(b, depth) })
	}
}

// benchRounds is how many raw/pipeline pairs BenchmarkLocalHost runs per depth.
var benchRounds = flag.Int("localhost.rounds", 3, "BenchmarkLocalHost: raw loop/pipeline pairs per depth (the ratio is their median)")

// benchDepth runs the rounds of one depth on a fresh Azurite, then the bare host once.
func benchDepth(b *testing.B, depth int) {
	cs := startDiskAzurite(b)
	jobs := depth
	if depth == 0 {
		jobs = 500
	}
	raw := func(b *testing.B) benchResult { return benchRaw(b, cs, depth, jobs) }
	host := func(b *testing.B) benchResult { return benchHost(b, cs, depth, jobs) }
	var ratios []float64
	for round := 0; round < *benchRounds; round++ {
		var rawRate, hostRate float64
		sides := []struct {
			name string
			run  func(*testing.B) benchResult
			rate *float64
		}{{"raw", raw, &rawRate}, {"localhost", host, &hostRate}}
		if round%2 == 1 {
			sides[0], sides[1] = sides[1], sides[0]
		}
		for _, side := range sides {
			b.Run(side.name, func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					r := side.run(b)
					*side.rate = r.rate
					r.report(b)
				}
			})
		}
		if rawRate > 0 && hostRate > 0 {
			ratios = append(ratios, hostRate/rawRate)
			b.Logf("depth %d round %d: local host %.0f jobs/s, raw SDK loop %.0f jobs/s, ratio %.2f", depth, round+1, hostRate, rawRate, hostRate/rawRate)
		}
	}
	b.Run("localhost-bare", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			benchBare(b, cs, depth, jobs).report(b)
		}
	})
	if len(ratios) > 0 {
		sort.Float64s(ratios)
		n := len(ratios)
		median := (ratios[(n-1)/2] + ratios[n/2]) / 2
		b.Logf("depth %d: median ratio %.2f of %d rounds (%.2f to %.2f)", depth, median, n, ratios[0], ratios[n-1])
	}
}

// benchDepths picks BenchmarkLocalHost's queue depths, e.g. -localhost.depths=1000.
var benchDepths = flag.String("localhost.depths", "0,1000,5000", "BenchmarkLocalHost: comma-separated queue depths (0: shallow, 500 jobs enqueued while draining)")

func parseDepths(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 0 {
			return nil, fmt.Errorf("-localhost.depths: %q is not a queue depth", f)
		}
		out = append(out, n)
	}
	return out, nil
}

type benchResult struct {
	rate     float64
	p50, p99 time.Duration
}

func (r benchResult) report(b *testing.B) {
	b.ReportMetric(r.rate, "jobs/s")
	b.ReportMetric(float64(r.p50.Milliseconds()), "p50-ms")
	b.ReportMetric(float64(r.p99.Milliseconds()), "p99-ms")
	b.ReportMetric(0, "ns/op")
}

func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return ds[int(float64(len(ds)-1)*p)]
}

func benchTransport() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = 128
	tr.MaxIdleConnsPerHost = 128
	return &http.Client{Transport: tr}
}

func benchClients(b *testing.B, cs, prefix string) *storage.Clients {
	c, err := storage.FromEnv(func(k string) string {
		return map[string]string{storage.SettingStorage: cs, storage.SettingNamePrefix: prefix}[k]
	}, &storage.Options{Transport: benchTransport()})
	if err != nil {
		b.Fatal(err)
	}
	if err := c.Ensure(context.Background()); err != nil {
		b.Fatal(err)
	}
	return c
}

// parallel runs f(i) for i in [0,n) on 16 goroutines.
func parallel(n int, f func(i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				f(i)
			}
		}()
	}
	wg.Wait()
}

func benchRaw(b *testing.B, cs string, depth, jobs int) benchResult {
	b.StopTimer()
	ctx := context.Background()
	c := benchClients(b, cs, testenv.Prefix(b))
	q := testenv.QueueService(c).NewQueueClient(c.Layout.JobsQueue())
	results := testenv.BlobService(c).ServiceClient().NewContainerClient(c.Layout.ResultsContainer())
	enqueue := func(i int) {
		msg := fmt.Sprintf(`{"id":"job-%d","t":%d}`, i, time.Now().UnixNano())
		if _, err := q.EnqueueMessage(ctx, msg, nil); err != nil {
			b.Error(err)
		}
	}
	if depth > 0 {
		parallel(jobs, enqueue)
	}
	var mu sync.Mutex
	var lat []time.Duration
	var done atomic.Int64
	start := time.Now()
	b.StartTimer()
	if depth == 0 {
		go parallel(jobs, enqueue)
	}
	sem := make(chan struct{}, 24)
	var wg sync.WaitGroup
	for done.Load() < int64(jobs) {
		resp, err := q.DequeueMessages(ctx, &azqueue.DequeueMessagesOptions{NumberOfMessages: ptr(int32(16)), VisibilityTimeout: ptr(int32(600))})
		if err != nil {
			b.Fatal(err)
		}
		if len(resp.Messages) == 0 {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		for _, m := range resp.Messages {
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				var body struct {
					ID string
					T  int64
				}
				_ = json.Unmarshal([]byte(*m.MessageText), &body)
				if _, err := results.NewBlockBlobClient(body.ID).UploadBuffer(ctx, []byte(`{"ok":true}`), nil); err != nil {
					b.Error(err)
					return
				}
				l := time.Since(time.Unix(0, body.T))
				if _, err := q.DeleteMessage(ctx, *m.MessageID, *m.PopReceipt, nil); err != nil {
					b.Error(err)
				}
				mu.Lock()
				lat = append(lat, l)
				mu.Unlock()
				done.Add(1)
			}()
		}
		// Like the host: poll again once no more than 8 are in flight.
		for len(sem) > 8 {
			time.Sleep(time.Millisecond)
		}
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	return benchResult{rate: float64(jobs) / elapsed.Seconds(), p50: percentile(lat, 0.5), p99: percentile(lat, 0.99)}
}

func benchHost(b *testing.B, cs string, depth, jobs int) benchResult {
	b.StopTimer()
	ctx := context.Background()
	prefix := testenv.Prefix(b)
	c := benchClients(b, cs, prefix)
	client := nightshift.NewClient(c, nil)
	bin := testenv.BuildBinary(b, "./internal/funchost/internal/e2ehandler")
	dir := b.TempDir()
	if err := appfolder.Assemble(ctx, dir, appfolder.Options{RepoRoot: testenv.RepoRoot(), HandlerBinary: bin, NamePrefix: prefix}); err != nil {
		b.Fatal(err)
	}
	ids := make([]string, jobs)
	sent := make([]time.Time, jobs)
	enqueue := func(i int) {
		t := time.Now()
		res, err := client.EnqueueRaw(ctx, "e2e.noop", json.RawMessage(`{}`), nil)
		if err != nil {
			b.Error(err)
			return
		}
		ids[i], sent[i] = res.JobID, t
	}
	if depth > 0 {
		parallel(jobs, enqueue)
	}
	settings := localTemplateSettings(b)
	settings[storage.SettingStorage] = cs
	settings[storage.SettingNamePrefix] = prefix
	h, err := New(dir, Options{
		Settings: settings,
		Getenv:   func(string) string { return "" },
		HTTPAddr: "127.0.0.1:0", Storage: &storage.Options{Transport: benchTransport()},
		Logger: discardLogger(),
	})
	if err != nil {
		b.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	stopped := make(chan struct{})
	go func() { _ = h.Run(runCtx); close(stopped) }()
	// The clock leaves out the host's and the handler's start-up, like the raw loop's
	// (which has none): shallow, one job runs through first and the clock starts when it
	// has; pre-filled, it starts when the first job starts.
	var start time.Time
	if depth == 0 {
		warmUp(b, ctx, client)
		start = time.Now()
		b.StartTimer()
		parallel(jobs, enqueue)
	} else {
		b.StartTimer()
	}
	// Done when the queue is empty and every status says succeeded.
	q := testenv.QueueService(c).NewQueueClient(c.Layout.JobsQueue())
	waitDrained(ctx, q, depth)
	b.StopTimer()
	var lat []time.Duration
	var end time.Time
	for i, id := range ids {
		st, err := client.Status(ctx, id)
		if err != nil || st.State != jobrecord.StateSucceeded {
			b.Fatalf("job %s: %v %+v", id, err, st)
		}
		lat = append(lat, st.FinishedAt.Sub(sent[i]))
		if st.FinishedAt.After(end) {
			end = st.FinishedAt
		}
		if depth > 0 && (start.IsZero() || st.StartedAt.Before(start)) {
			start = st.StartedAt
		}
	}
	cancel()
	<-stopped
	return benchResult{rate: float64(jobs) / end.Sub(start).Seconds(), p50: percentile(lat, 0.5), p99: percentile(lat, 0.99)}
}

// waitDrained returns when q holds no message. Every check is a Get Queue Properties,
// which Azurite answers by counting the messages it holds, at the cost of a receive:
// checking every 20 ms would add a call per two jobs to the storage under test at depth
// 5,000. So a pre-filled queue is checked every 250 ms; the shallow run, over in a second or
// two, every 20 ms. (The pipeline's rate comes from its statuses' times, not from here.)
func waitDrained(ctx context.Context, q *azqueue.QueueClient, depth int) {
	every := 20 * time.Millisecond
	if depth > 0 {
		every = 250 * time.Millisecond
	}
	for {
		p, err := q.GetProperties(ctx, nil)
		if err == nil && *p.ApproximateMessagesCount == 0 {
			return
		}
		time.Sleep(every)
	}
}

// warmUp runs one job through the host and waits until it has succeeded.
func warmUp(b *testing.B, ctx context.Context, client *nightshift.Client) {
	res, err := client.EnqueueRaw(ctx, "e2e.noop", json.RawMessage(`{}`), nil)
	if err != nil {
		b.Fatal(err)
	}
	testenv.WaitFor(b, 2*time.Minute, "the warm-up job", func() bool {
		st, err := client.Status(ctx, res.JobID)
		return err == nil && st.State == jobrecord.StateSucceeded
	})
}

// benchBare drives the local host with the test handler answering {} at once: the local
// host's own cost (receive, invoke, delete) without the nightshift handler's storage work.
// Only throughput is measured.
func benchBare(b *testing.B, cs string, depth, jobs int) benchResult {
	b.StopTimer()
	ctx := context.Background()
	prefix := testenv.Prefix(b)
	c := benchClients(b, cs, prefix)
	q := testenv.QueueService(c).NewQueueClient(c.Layout.JobsQueue())
	bin := testenv.BuildBinary(b, "./internal/funchost/internal/testhandler")
	dir := b.TempDir()
	must(b, os.WriteFile(filepath.Join(dir, "host.json"), []byte(testHostJSON{BatchSize: 16, NewBatchThreshold: 8}.render()), 0o644))
	must(b, os.Symlink(bin, filepath.Join(dir, "handler")))
	must(b, os.MkdirAll(filepath.Join(dir, "RunJob"), 0o755))
	must(b, os.WriteFile(filepath.Join(dir, "RunJob", "function.json"), []byte(queueFn(c.Layout.JobsQueue())), 0o644))
	enqueue := func(int) {
		if _, err := q.EnqueueMessage(ctx, `{"do":"ok"}`, nil); err != nil {
			b.Error(err)
		}
	}
	if depth > 0 {
		parallel(jobs, enqueue)
	}
	h, err := New(dir, Options{
		Settings: map[string]string{storage.SettingStorage: cs}, Getenv: func(string) string { return "" },
		Storage: &storage.Options{Transport: benchTransport()}, Logger: discardLogger(),
	})
	must(b, err)
	runCtx, cancel := context.WithCancel(ctx)
	stopped := make(chan struct{})
	start := time.Now()
	b.StartTimer()
	go func() { _ = h.Run(runCtx); close(stopped) }()
	if depth == 0 {
		parallel(jobs, enqueue)
	}
	waitDrained(ctx, q, depth)
	elapsed := time.Since(start)
	b.StopTimer()
	cancel()
	<-stopped
	return benchResult{rate: float64(jobs) / elapsed.Seconds()}
}

// startDiskAzurite starts the pinned Azurite with a disk location on free ports and stops
// it (by PID) when the benchmark ends.
func startDiskAzurite(b *testing.B) string { return testenv.DiskAzurite(b) }
