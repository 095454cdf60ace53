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
// at most 24 in flight (the host's batchSize + newBatchThreshold from host.json). The
// pipeline runs twice per round: fed by nightshift.Client ("localhost": it writes the
// `queued` record besides the enqueue) and fed by a raw producer ("localhost-rawenqueue":
// one enqueue, like the raw loop's producer, so both sides do the same storage work).
//
// Depth "0" enqueues jobs while the consumers run (the queue stays shallow); depths 1000
// and 5000 pre-fill the queue and measure draining it. The pipeline's clock leaves out
// the host's and the handler's start-up (see benchHost). Each depth gets its own Azurite
// with a disk location (in-memory mode stalls under churn; see docs/benchmarks.md), warms
// it with an unmeasured shallow drain of each side, and runs -localhost.rounds rounds of
// the three drains, each round starting with the next; a round's ratios compare each
// pipeline drain with its raw drain, and the depth's ratio is the median of its rounds,
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

// benchRounds is how many rounds (raw loop and both pipelines) BenchmarkLocalHost runs per depth.
var benchRounds = flag.Int("localhost.rounds", 5, "BenchmarkLocalHost: rounds of raw loop and both pipelines per depth (the ratios are their medians)")

// benchSide is one of the drains a round compares.
type benchSide struct {
	name string
	run  func(*testing.B) benchResult
}

// benchDepth runs the rounds of one depth on a fresh Azurite, then the bare host once.
func benchDepth(b *testing.B, depth int) {
	cs := startDiskAzurite(b)
	warmAzurite(b, cs)
	jobs := depth
	if depth == 0 {
		jobs = 500
	}
	sides := []benchSide{
		{"raw", func(b *testing.B) benchResult { return benchRaw(b, cs, depth, jobs) }},
		{"localhost", func(b *testing.B) benchResult { return benchHost(b, cs, depth, jobs, true) }},
		{"localhost-rawenqueue", func(b *testing.B) benchResult { return benchHost(b, cs, depth, jobs, false) }},
	}
	ratios := map[string][]float64{}
	for round := 0; round < *benchRounds; round++ {
		rates := map[string]float64{}
		for k := range sides { // each round starts with the next side
			side := sides[(round+k)%len(sides)]
			b.Run(side.name, func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					r := side.run(b)
					rates[side.name] = r.rate
					r.report(b)
				}
			})
		}
		for _, side := range sides[1:] {
			if rates["raw"] > 0 && rates[side.name] > 0 {
				ratio := rates[side.name] / rates["raw"]
				ratios[side.name] = append(ratios[side.name], ratio)
				b.Logf("depth %d round %d: %s %.0f jobs/s, raw SDK loop %.0f jobs/s, ratio %.2f", depth, round+1, side.name, rates[side.name], rates["raw"], ratio)
			}
		}
	}
	b.Run("localhost-bare", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			benchBare(b, cs, depth, jobs).report(b)
		}
	})
	for _, side := range sides[1:] {
		if rs := ratios[side.name]; len(rs) > 0 {
			sort.Float64s(rs)
			n := len(rs)
			median := (rs[(n-1)/2] + rs[n/2]) / 2
			b.Logf("depth %d: %s median ratio %.2f of %d rounds (%.2f to %.2f)", depth, side.name, median, n, rs[0], rs[n-1])
		}
	}
}

// warmAzurite drains 500 shallow jobs through each side, unmeasured, so that neither side's
// first round pays for a fresh Azurite's start (Node compiling its hot paths, first
// extents): measured on a fresh Azurite, the raw loop's shallow rate climbed from 376 to
// 553 to 619 jobs/s over its first three rounds.
func warmAzurite(b *testing.B, cs string) {
	raw := benchRaw(b, cs, 0, 500)
	host := benchHost(b, cs, 0, 500, true)
	b.Logf("warm-up (not counted): raw SDK loop %.0f jobs/s, local host %.0f jobs/s", raw.rate, host.rate)
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
	defer dropContainers(b, c)
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

// benchHost drains jobs through the whole pipeline. viaClient: the producer is
// nightshift.Client (EnqueueRaw, which writes the `queued` record); else it is a raw
// producer putting an envelope with a job_id on the queue, as the raw loop's producer does
// with its message (the job's end is then its record's create, like the raw loop's upload).
func benchHost(b *testing.B, cs string, depth, jobs int, viaClient bool) benchResult {
	b.StopTimer()
	ctx := context.Background()
	prefix := testenv.Prefix(b)
	c := benchClients(b, cs, prefix)
	defer dropContainers(b, c)
	client := nightshift.NewClient(c, nil)
	produce := benchProducer(c, client, viaClient)
	bin := testenv.BuildBinary(b, "./internal/funchost/internal/e2ehandler")
	dir := b.TempDir()
	if err := appfolder.Assemble(ctx, dir, appfolder.Options{RepoRoot: testenv.RepoRoot(), HandlerBinary: bin, NamePrefix: prefix}); err != nil {
		b.Fatal(err)
	}
	ids := make([]string, jobs)
	sent := make([]time.Time, jobs)
	enqueue := func(i int) {
		t := time.Now()
		id, err := produce(ctx, i)
		if err != nil {
			b.Error(err)
			return
		}
		ids[i], sent[i] = id, t
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
		warmUp(b, ctx, client, produce)
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

// dropContainers deletes c's containers once a drain is over (untimed), so that every
// drain starts on an Azurite holding about as many blobs as the one before: Azurite keeps
// all blobs' metadata in one LokiJS collection and writes the whole of it to disk every
// 5 s, so its cost per call grows with the blobs it holds. (Without this, at depth 5,000
// the raw loop fell from 117 to 80 jobs/s over five rounds on one Azurite, as its blob
// database grew to 76,000 records and 85 MB.)
func dropContainers(b *testing.B, c *storage.Clients) {
	for _, name := range c.Layout.Containers() {
		if err := c.Store().DeleteContainer(context.Background(), name); err != nil {
			b.Fatal(err)
		}
	}
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

// producer enqueues the pipeline's job i (-1: the warm-up job) and returns its id.
type producer func(ctx context.Context, i int) (string, error)

// benchProducer enqueues through client, or as a raw producer writing the envelope to the
// jobs queue.
func benchProducer(c *storage.Clients, client *nightshift.Client, viaClient bool) producer {
	if viaClient {
		return func(ctx context.Context, _ int) (string, error) {
			res, err := client.EnqueueRaw(ctx, "e2e.noop", json.RawMessage(`{}`), nil)
			if err != nil {
				return "", err
			}
			return res.JobID, nil
		}
	}
	q := testenv.QueueService(c).NewQueueClient(c.Layout.JobsQueue())
	return func(ctx context.Context, i int) (string, error) {
		id := fmt.Sprintf("bench-%d", i)
		_, err := q.EnqueueMessage(ctx, fmt.Sprintf(`{"job_id":%q,"kind":"e2e.noop","args":{}}`, id), nil)
		return id, err
	}
}

// warmUp runs one job through the host and waits until it has succeeded.
func warmUp(b *testing.B, ctx context.Context, client *nightshift.Client, produce producer) {
	id, err := produce(ctx, -1)
	if err != nil {
		b.Fatal(err)
	}
	testenv.WaitFor(b, 2*time.Minute, "the warm-up job", func() bool {
		st, err := client.Status(ctx, id)
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
