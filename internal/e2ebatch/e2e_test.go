package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/internal/appfolder"
	"github.com/nightshift-jobs/nightshift/internal/funchost"
	"github.com/nightshift-jobs/nightshift/internal/testenv"
	"github.com/nightshift-jobs/nightshift/record"
	"github.com/nightshift-jobs/nightshift/storage"
)

// EnvBatchN sets the number of children of the large end-to-end batch tests (default
// 1000).
const EnvBatchN = "E2E_BATCH_N"

func handlerBinary(t testing.TB) string { return testenv.BuildBinary(t, "./internal/e2ebatch") }

// logBuffer collects the host's log.
type logBuffer = testenv.LogBuffer

func TestMain(m *testing.M) { testenv.Main(m) }

// app is an app folder (the repository's host.json and job functions, the e2ebatch
// handler) on a fresh name prefix, run by the local Functions host.
type app struct {
	t        testing.TB
	dir      string
	runs     string
	settings map[string]string
	store    *storage.Clients
	client   *nightshift.Client
	logs     *logBuffer
}

var hostJSONTweaks = regexp.MustCompile(`"maxPollingInterval": "[^"]*"|"visibilityTimeout": "[^"]*"`)

// jobFunctions are the functions the e2ebatch handler serves.
var jobFunctions = map[string]bool{
	nightshift.FunctionRunJobHigh: true, nightshift.FunctionRunJob: true, nightshift.FunctionRunJobLow: true,
	nightshift.FunctionRunDeadLetterHigh: true, nightshift.FunctionRunDeadLetter: true, nightshift.FunctionRunDeadLetterLow: true,
}

func newApp(t testing.TB, connStr string) *app {
	t.Helper()
	bin := handlerBinary(t)
	prefix := testenv.Prefix(t)
	a := &app{t: t, dir: t.TempDir(), runs: t.TempDir(), logs: &logBuffer{}}
	ctx := context.Background()
	must(t, appfolder.Assemble(ctx, a.dir, appfolder.Options{RepoRoot: testenv.RepoRoot(), HandlerBinary: bin, NamePrefix: prefix}))
	entries, err := os.ReadDir(a.dir)
	must(t, err)
	for _, e := range entries {
		if e.IsDir() && !jobFunctions[e.Name()] {
			must(t, os.RemoveAll(filepath.Join(a.dir, e.Name())))
		}
	}
	// The repository's host.json (batchSize 16, newBatchThreshold 8), with test-speed
	// polling and retry visibility.
	hj, err := os.ReadFile(filepath.Join(a.dir, "host.json"))
	must(t, err)
	hj = hostJSONTweaks.ReplaceAllFunc(hj, func(m []byte) []byte {
		if strings.Contains(string(m), "maxPollingInterval") {
			return []byte(`"maxPollingInterval": "00:00:00.500"`)
		}
		return []byte(`"visibilityTimeout": "00:00:01"`)
	})
	must(t, os.WriteFile(filepath.Join(a.dir, "host.json"), hj, 0o644))
	a.settings = map[string]string{storage.SettingStorage: connStr, storage.SettingNamePrefix: prefix, "E2E_DIR": a.runs}
	a.store, err = storage.FromEnv(func(k string) string { return a.settings[k] }, nil)
	must(t, err)
	must(t, a.store.Ensure(ctx))
	a.client = nightshift.NewClient(a.store, &nightshift.ClientOptions{Concurrency: 32})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("host log (tail):\n%s", a.logs.Tail(8000))
		}
	})
	return a
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// run starts the local host; it is stopped at cleanup.
func (a *app) run() { a.runWith(nil) }

// runWith starts the local host with storage options for its own clients.
func (a *app) runWith(so *storage.Options) {
	a.t.Helper()
	h, err := funchost.New(a.dir, funchost.Options{
		Settings: a.settings, Getenv: func(string) string { return "" },
		Logger:            slog.New(slog.NewTextHandler(a.logs, &slog.HandlerOptions{Level: slog.LevelInfo})),
		ReceiveVisibility: 5 * time.Second, DrainTimeout: 5 * time.Second, Storage: so,
	})
	must(a.t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = h.Run(ctx); close(done) }()
	a.t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			a.t.Error("host did not stop within 30s")
		}
	})
}

func (a *app) runsOf(id string) int { return testenv.Runs(filepath.Join(a.runs, "runs"), id) }

func (a *app) pids() []int {
	entries, _ := os.ReadDir(a.runs)
	var out []int
	for _, e := range entries {
		if p, ok := strings.CutPrefix(e.Name(), "pid-"); ok {
			n, _ := strconv.Atoi(p)
			out = append(out, n)
		}
	}
	return out
}

func (a *app) status(id string) *record.Status {
	st, _, err := a.store.GetStatus(context.Background(), id)
	if err != nil {
		return nil
	}
	return st
}

func batchN(t testing.TB) int {
	if v := os.Getenv(EnvBatchN); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("%s=%q: want a positive number", EnvBatchN, v)
		}
		return n
	}
	return 1000
}

func squares(n, ms int) (params []nightshift.EnqueueParams, sum int) {
	for i := 0; i < n; i++ {
		params = append(params, nightshift.EnqueueParams{Args: SqArgs{I: i, MS: ms}})
		sum += i * i
	}
	return params, sum
}

// checkBatch waits for the finalizer and checks: one finalizer run, the right sum, every
// child counted once.
func (a *app) checkBatch(bi *nightshift.BatchInfo, n, want int, timeout time.Duration) *nightshift.BatchStatus {
	a.t.Helper()
	ctx := context.Background()
	testenv.WaitFor(a.t, timeout, "the finalizer", func() bool {
		st := a.status(bi.FinalizerJobID)
		return st != nil && st.State.Terminal()
	})
	var r SumResult
	must(a.t, a.client.Result(ctx, bi.FinalizerJobID, &r))
	if r.Sum != want || r.Succeeded != n || r.Failed != 0 {
		a.t.Fatalf("finalizer result %+v, want sum %d of %d children", r, want, n)
	}
	if runs := a.runsOf(bi.FinalizerJobID); runs != 1 {
		a.t.Fatalf("finalizer ran %d times", runs)
	}
	bs, err := a.client.Batch(ctx, bi.BatchID, nil)
	must(a.t, err)
	if bs.State != record.BatchSucceeded || bs.Succeeded != n || bs.Failed != 0 || bs.Pending != 0 {
		a.t.Fatalf("batch status %+v", bs)
	}
	if st := a.status(bi.FinalizerJobID); st.Progress == nil || st.Progress.Fraction <= 0 {
		a.t.Fatalf("finalizer progress %+v", st.Progress)
	}
	return bs
}

// A large batch through the local host: every child runs, the finalizer runs once and
// sums every child's result.
func TestE2E_BatchCompletes(t *testing.T) {
	a := newApp(t, testenv.ConnectionString(t))
	a.run()
	n := batchN(t)
	params, want := squares(n, 0)
	start := time.Now()
	bi, err := a.client.StartBatch(context.Background(), nightshift.BatchParams{Children: params, Finalizer: &nightshift.EnqueueParams{Args: SumArgs{}}})
	must(t, err)
	enq := time.Since(start)
	a.checkBatch(bi, n, want, 5*time.Minute)
	t.Logf("%d children: enqueued in %s, finalizer done after %s", n, enq.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
}

// Every child's message is on the queue twice, side by side, so most pairs are received
// in one batch and run at the same time: the batch still counts each child once and runs
// the finalizer once.
func TestE2E_BatchChildrenRunTwice(t *testing.T) {
	a := newApp(t, testenv.ConnectionString(t))
	ctx := context.Background()
	n := batchN(t)
	params, want := squares(n, 20)
	bi, err := a.client.StartBatch(ctx, nightshift.BatchParams{Children: params, Finalizer: &nightshift.EnqueueParams{Args: SumArgs{}}})
	must(t, err)
	q := testenv.QueueService(a.store).NewQueueClient(a.store.Layout.JobsQueue())
	_, err = q.ClearMessages(ctx, nil)
	must(t, err)
	m, err := a.store.GetBatchManifest(ctx, bi.BatchID)
	must(t, err)
	for _, env := range m.Children {
		body, err := env.Encode()
		must(t, err)
		for range 2 {
			_, err := a.store.Enqueue(ctx, a.store.Layout.JobsQueue(), body, 0, 0)
			must(t, err)
		}
	}
	a.run()
	a.checkBatch(bi, n, want, 5*time.Minute)
	twice := 0
	for i := 0; i < n; i++ {
		if a.runsOf(record.ChildJobID(bi.BatchID, i)) > 1 {
			twice++
		}
	}
	if twice == 0 {
		t.Fatal("no child ran twice; the test did not exercise duplicate runs")
	}
	t.Logf("%d of %d children ran twice", twice, n)
}

// The handler is killed (SIGKILL) twice while the batch runs: the host restarts it, the
// interrupted messages come back after their visibility timeout, and the batch still
// completes with one finalizer run and the right sum.
func TestE2E_BatchHandlerKilled(t *testing.T) {
	a := newApp(t, testenv.ConnectionString(t))
	a.run()
	ctx := context.Background()
	n := batchN(t)
	params, want := squares(n, 30)
	bi, err := a.client.StartBatch(ctx, nightshift.BatchParams{Children: params, Finalizer: &nightshift.EnqueueParams{Args: SumArgs{}}})
	must(t, err)
	killed := map[int]bool{}
	for _, frac := range []float64{0.25, 0.6} {
		testenv.WaitFor(t, 3*time.Minute, fmt.Sprintf("%.0f%% of the children", frac*100), func() bool {
			bs, err := a.client.Batch(ctx, bi.BatchID, nil)
			return err == nil && float64(bs.Succeeded) >= frac*float64(n)
		})
		for _, pid := range a.pids() {
			if !killed[pid] {
				killed[pid] = true
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	a.checkBatch(bi, n, want, 5*time.Minute)
	if len(a.pids()) < 3 {
		t.Fatalf("handler pids %v: want the first and two restarts", a.pids())
	}
}

// A dead child under each failure policy.
func TestE2E_BatchDeadChild(t *testing.T) {
	a := newApp(t, testenv.ConnectionString(t))
	a.run()
	ctx := context.Background()
	start := func(policy nightshift.FailurePolicy) *nightshift.BatchInfo {
		params, _ := squares(20, 0)
		params[7] = nightshift.EnqueueParams{Args: SqArgs{I: 7, Fail: true}}
		bi, err := a.client.StartBatch(ctx, nightshift.BatchParams{Children: params, Finalizer: &nightshift.EnqueueParams{Args: SumArgs{}}, FailurePolicy: policy})
		must(t, err)
		return bi
	}
	always, fail := start(nightshift.FinalizeAlways), start(nightshift.FailBatch)
	testenv.WaitFor(t, 2*time.Minute, "both batches", func() bool {
		st := a.status(always.FinalizerJobID)
		b, _, err := a.store.GetBatch(ctx, fail.BatchID)
		return st != nil && st.State.Terminal() && err == nil && b.FinalizerEnqueued
	})
	var r SumResult
	must(t, a.client.Result(ctx, always.FinalizerJobID, &r))
	if r.Succeeded != 19 || r.Failed != 1 {
		t.Fatalf("finalize-always result %+v", r)
	}
	bs, err := a.client.Batch(ctx, fail.BatchID, nil)
	must(t, err)
	if bs.State != record.BatchFailed || bs.Failed != 1 || bs.Succeeded != 19 || bs.Finalizer != nil || a.runsOf(fail.FinalizerJobID) != 0 {
		t.Fatalf("fail-batch status %+v (finalizer runs %d)", bs, a.runsOf(fail.FinalizerJobID))
	}
	if st := a.status(record.ChildJobID(fail.BatchID, 7)); st == nil || st.State != record.StateDead {
		t.Fatalf("failing child status %+v", st)
	}
}

// With a backlog of low-priority jobs, a high-priority job runs on its own listener and
// finishes while the low backlog is still draining. The numbers are logged; the
// assertions are ordering facts.
func TestE2E_PriorityHighOvertakesLowBacklog(t *testing.T) {
	a := newApp(t, testenv.ConnectionString(t))
	ctx := context.Background()
	const backlog = 600
	low, err := a.client.PriorityQueue(nightshift.PriorityLow)
	must(t, err)
	high, err := a.client.PriorityQueue(nightshift.PriorityHigh)
	must(t, err)
	params := make([]nightshift.EnqueueParams, backlog)
	for i := range params {
		params[i] = nightshift.EnqueueParams{Args: SqArgs{I: i, MS: 300}, Opts: &nightshift.EnqueueOptions{Queue: low}}
	}
	for _, r := range must2(a.client.EnqueueMany(ctx, params)) {
		must(t, r.Err)
	}
	a.run()
	testenv.WaitFor(t, time.Minute, "the low backlog to start", func() bool { return len(a.runsDir()) > 0 })
	t0 := time.Now()
	hres, err := a.client.Enqueue(ctx, SqArgs{I: 3}, &nightshift.EnqueueOptions{Queue: high})
	must(t, err)
	var highDone time.Duration
	var lowLeft int
	testenv.WaitFor(t, time.Minute, "the high job", func() bool {
		st := a.status(hres.JobID)
		if st != nil && st.State == record.StateSucceeded {
			highDone = time.Since(t0)
			lowLeft = backlog - len(a.runsDir())
			return true
		}
		return false
	})
	p, err := testenv.QueueService(a.store).NewQueueClient(low).GetProperties(ctx, nil)
	must(t, err)
	if lowLeft <= 0 || *p.ApproximateMessagesCount == 0 {
		t.Fatalf("the low backlog had drained before the high job finished (%d left, %d queued)", lowLeft, *p.ApproximateMessagesCount)
	}
	testenv.WaitFor(t, 5*time.Minute, "the low backlog", func() bool { return len(a.runsDir()) >= backlog })
	t.Logf("high job done %s after enqueue, with %d of %d low jobs not yet started; low backlog drained %s after the high enqueue",
		highDone.Round(time.Millisecond), lowLeft, backlog, time.Since(t0).Round(time.Millisecond))
}

func (a *app) runsDir() []os.DirEntry {
	e, _ := os.ReadDir(filepath.Join(a.runs, "runs"))
	return e
}

func must2[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
