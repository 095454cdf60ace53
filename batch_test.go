package nightshift

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azqueue/v2"
	"github.com/nightshift-jobs/nightshift/internal/testenv"
	"github.com/nightshift-jobs/nightshift/record"
	"github.com/nightshift-jobs/nightshift/storage"
)

type sqArgs struct {
	I    int  `json:"i"`
	Fail bool `json:"fail,omitempty"`
}

func (sqArgs) Kind() string { return "test.sq" }

type sumArgs struct{}

func (sumArgs) Kind() string { return "test.sum" }

type fanoutArgs struct{ N int }

func (fanoutArgs) Kind() string { return "test.fanout" }

// sumResult is what the test finalizer returns.
type sumResult struct {
	Sum, Succeeded, Failed int
	Errors                 []string
}

type batchKinds struct {
	childRuns sync.Map // job id -> *atomic.Int64
	finalRuns atomic.Int64
}

func (k *batchKinds) registry() *Registry {
	reg := NewRegistry()
	AddWorkerFunc(reg, func(ctx context.Context, j *Job[sqArgs]) (any, error) {
		v, _ := k.childRuns.LoadOrStore(j.ID, new(atomic.Int64))
		v.(*atomic.Int64).Add(1)
		if j.Args.Fail {
			return nil, Permanentf("child %d fails on purpose", j.Args.I)
		}
		return j.Args.I * j.Args.I, nil
	}, nil)
	AddWorkerFunc(reg, func(ctx context.Context, j *Job[sumArgs]) (any, error) {
		k.finalRuns.Add(1)
		time.Sleep(200 * time.Millisecond) // long enough for a duplicate to overlap
		children, err := BatchChildren(ctx, j.BatchID)
		if err != nil {
			return nil, err
		}
		var r sumResult
		for _, c := range children {
			switch c.State {
			case record.StateSucceeded:
				var v int
				if err := json.Unmarshal(c.Result, &v); err != nil {
					return nil, err
				}
				r.Sum += v
				r.Succeeded++
			default:
				r.Failed++
				r.Errors = append(r.Errors, c.Error)
			}
		}
		return r, nil
	}, nil)
	AddWorkerFunc(reg, func(ctx context.Context, j *Job[fanoutArgs]) (any, error) {
		children := make([]EnqueueParams, j.Args.N)
		for i := range children {
			children[i] = EnqueueParams{Args: sqArgs{I: i}}
		}
		bi, err := StartBatch(ctx, BatchParams{Children: children, Finalizer: &EnqueueParams{Args: sumArgs{}}})
		if err != nil {
			return nil, err
		}
		return bi, nil
	}, nil)
	return reg
}

func (k *batchKinds) maxChildRuns() int64 {
	var m int64
	k.childRuns.Range(func(_, v any) bool { m = max(m, v.(*atomic.Int64).Load()); return true })
	return m
}

func squares(n int) (params []EnqueueParams, sum int) {
	for i := 0; i < n; i++ {
		params = append(params, EnqueueParams{Args: sqArgs{I: i}})
		sum += i * i
	}
	return params, sum
}

func (fe *featEnv) finalResult(batchID string) sumResult {
	fe.t.Helper()
	var r sumResult
	if err := fe.client.Result(context.Background(), record.FinalizerJobID(batchID), &r); err != nil {
		fe.t.Fatal(err)
	}
	return r
}

// Every child delivered twice (concurrently, by a pump running 8 at once): each child is
// counted once, the finalizer runs once and sees every result.
func TestBatchChildrenTwiceFinalizerOnce(t *testing.T) {
	t.Parallel()
	k := &batchKinds{}
	fe := newFeatEnv(t, k.registry(), nil)
	ctx := context.Background()
	params, want := squares(60)
	bi, err := fe.client.StartBatch(ctx, BatchParams{Children: params, Finalizer: &EnqueueParams{Args: sumArgs{}}})
	if err != nil {
		t.Fatal(err)
	}
	if bi.Total != 60 || bi.State != record.BatchRunning || bi.FinalizerJobID != record.FinalizerJobID(bi.BatchID) {
		t.Fatalf("batch info %+v", bi)
	}
	m, err := fe.store.GetBatchManifest(ctx, bi.BatchID)
	if err != nil {
		t.Fatal(err)
	}
	if err := fe.client.sendAll(ctx, fe.store.Layout.JobsQueue(), m.Children); err != nil { // every child twice
		t.Fatal(err)
	}
	fe.runUntil(60*time.Second, "the finalizer", func() bool { return fe.ended(bi.FinalizerJobID) })
	r := fe.finalResult(bi.BatchID)
	if r.Sum != want || r.Succeeded != 60 || r.Failed != 0 {
		t.Fatalf("finalizer result %+v, want sum %d of 60", r, want)
	}
	if n := k.finalRuns.Load(); n != 1 {
		t.Fatalf("finalizer ran %d times", n)
	}
	bs, err := fe.client.Batch(ctx, bi.BatchID, &BatchStatusOptions{CountRunning: true})
	if err != nil {
		t.Fatal(err)
	}
	if bs.State != record.BatchSucceeded || bs.Succeeded != 60 || bs.Failed != 0 || bs.Pending != 0 || bs.Running != 0 ||
		bs.Finalizer == nil || bs.Finalizer.State != record.StateSucceeded || !bs.Record.FinalizerEnqueued {
		t.Fatalf("batch status %+v", bs)
	}
}

// Children of the last shard ending together (one group-committed shard write) finish the
// batch once: one finalizer message, so nothing is left on the queue when it has run.
func TestBatchChildrenEndingTogetherEnqueueOneFinalizer(t *testing.T) {
	t.Parallel()
	k := &batchKinds{}
	fe := newFeatEnv(t, k.registry(), nil)
	ctx := context.Background()
	params, want := squares(64)
	bi, err := fe.client.StartBatch(ctx, BatchParams{Children: params, Finalizer: &EnqueueParams{Args: sumArgs{}}})
	if err != nil {
		t.Fatal(err)
	}
	fe.runUntil(60*time.Second, "the finalizer", func() bool { return fe.ended(bi.FinalizerJobID) })
	if r := fe.finalResult(bi.BatchID); r.Sum != want || k.finalRuns.Load() != 1 {
		t.Fatalf("finalizer result %+v after %d runs", r, k.finalRuns.Load())
	}
	// runUntil has waited for every delivery to finish and delete its message; a second
	// finalizer message would still be there (invisible, checking back later).
	if n := fe.queueCount(fe.store.Layout.JobsQueue()); n != 0 {
		t.Fatalf("%d messages left on the queue after the batch ended, want 0 (a duplicate finalizer message?)", n)
	}
}

// Two copies of the finalizer's message delivered at the same instant: one runs, the
// other finds the claim and steps aside.
func TestBatchFinalizerDuplicateMessageRunsOnce(t *testing.T) {
	t.Parallel()
	k := &batchKinds{}
	fe := newFeatEnv(t, k.registry(), nil)
	ctx := context.Background()
	params, want := squares(3)
	bi, err := fe.client.StartBatch(ctx, BatchParams{Children: params, Finalizer: &EnqueueParams{Args: sumArgs{}}, Priority: PriorityHigh})
	if err != nil {
		t.Fatal(err)
	}
	q := fe.store.Layout.HighQueue()
	qc := testenv.QueueService(fe.store).NewQueueClient(q)
	for i := 0; i < 3; i++ {
		resp, err := qc.DequeueMessage(ctx, nil)
		if err != nil || len(resp.Messages) != 1 {
			t.Fatalf("child message %d: %v", i, err)
		}
		if code := fe.invokeMessage(ctx, q, FunctionRunJobHigh, resp.Messages[0]); code != 200 {
			t.Fatalf("child invocation: %d", code)
		}
	}
	b, _, err := fe.store.GetBatch(ctx, bi.BatchID)
	if err != nil || b.State != record.BatchSucceeded || !b.FinalizerEnqueued {
		t.Fatalf("batch %+v %v", b, err)
	}
	// The completion trigger fires again (e.g. a redelivered last child): a second
	// finalizer message with the same id.
	b.FinalizerEnqueued = false
	if err := finishBatch(ctx, fe.store, b); err != nil {
		t.Fatal(err)
	}
	resp, err := qc.DequeueMessages(ctx, &azqueue.DequeueMessagesOptions{NumberOfMessages: to.Ptr(int32(2)), VisibilityTimeout: to.Ptr(int32(60))})
	if err != nil || len(resp.Messages) != 2 {
		t.Fatalf("want 2 finalizer messages, got %d (%v)", len(resp.Messages), err)
	}
	var wg sync.WaitGroup
	for _, m := range resp.Messages {
		wg.Add(1)
		go func() { defer wg.Done(); fe.invokeMessage(ctx, q, FunctionRunJobHigh, m) }()
	}
	wg.Wait()
	if n := k.finalRuns.Load(); n != 1 {
		t.Fatalf("finalizer ran %d times", n)
	}
	if r := fe.finalResult(bi.BatchID); r.Sum != want {
		t.Fatalf("result %+v, want sum %d", r, want)
	}
}

// A dead child: FinalizeAlways runs the finalizer, which sees the failure; FailBatch fails
// the batch without running it. AllowedFailures tolerates it.
func TestBatchFailurePolicy(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		policy    FailurePolicy
		allowed   int
		wantState record.BatchState
		finalizer bool
	}{
		{FinalizeAlways, 0, record.BatchFailed, true},
		{FailBatch, 0, record.BatchFailed, false},
		{FailBatch, 1, record.BatchSucceeded, true},
	} {
		t.Run(fmt.Sprintf("%s-%d", tc.policy, tc.allowed), func(t *testing.T) {
			t.Parallel()
			k := &batchKinds{}
			fe := newFeatEnv(t, k.registry(), nil)
			ctx := context.Background()
			params, _ := squares(5)
			params[2] = EnqueueParams{Args: sqArgs{I: 2, Fail: true}}
			bi, err := fe.client.StartBatch(ctx, BatchParams{Children: params, Finalizer: &EnqueueParams{Args: sumArgs{}},
				FailurePolicy: tc.policy, AllowedFailures: tc.allowed})
			if err != nil {
				t.Fatal(err)
			}
			fe.runUntil(60*time.Second, "the batch's end", func() bool {
				b, _, err := fe.store.GetBatch(ctx, bi.BatchID)
				return err == nil && b.FinalizerEnqueued && (!tc.finalizer || fe.ended(bi.FinalizerJobID))
			})
			bs, err := fe.client.Batch(ctx, bi.BatchID, nil)
			if err != nil {
				t.Fatal(err)
			}
			if bs.State != tc.wantState || bs.Succeeded != 4 || bs.Failed != 1 {
				t.Fatalf("batch %+v", bs)
			}
			if !tc.finalizer {
				if bs.Finalizer != nil || k.finalRuns.Load() != 0 {
					t.Fatalf("finalizer ran under %s: %+v", tc.policy, bs.Finalizer)
				}
				return
			}
			r := fe.finalResult(bi.BatchID)
			if r.Succeeded != 4 || r.Failed != 1 || len(r.Errors) != 1 || r.Errors[0] == "" {
				t.Fatalf("finalizer result %+v", r)
			}
		})
	}
}

// A start that crashed after enqueueing some children but before recording it: resuming
// enqueues them again (duplicates), and the batch still counts each child once.
func TestBatchResumeAfterCrashMidEnqueue(t *testing.T) {
	t.Parallel()
	k := &batchKinds{}
	fe := newFeatEnv(t, k.registry(), nil)
	ctx := context.Background()
	params, want := squares(40)
	b, children, err := fe.client.buildBatch(ctx, BatchParams{BatchID: "resume-1", Children: params, Finalizer: &EnqueueParams{Args: sumArgs{}}}, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := fe.store.PutBatchManifest(ctx, &record.BatchManifest{BatchID: b.BatchID, Children: children}); err != nil {
		t.Fatal(err)
	}
	if _, err := fe.store.PutBatch(ctx, b, ""); err != nil {
		t.Fatal(err)
	}
	if err := fe.client.sendAll(ctx, b.Queue, children[:25]); err != nil { // then "crash"
		t.Fatal(err)
	}
	// Starting the same batch id again resumes from the manifest.
	bi, err := fe.client.StartBatch(ctx, BatchParams{BatchID: "resume-1", Children: params[:1]})
	if err != nil {
		t.Fatal(err)
	}
	if !bi.Resumed || bi.Total != 40 || bi.State != record.BatchRunning {
		t.Fatalf("resumed batch %+v", bi)
	}
	if n := fe.queueCount(b.Queue); n != 65 {
		t.Fatalf("queue holds %d messages, want 25 + 40", n)
	}
	fe.runUntil(60*time.Second, "the finalizer", func() bool { return fe.ended(bi.FinalizerJobID) })
	if r := fe.finalResult("resume-1"); r.Sum != want || r.Succeeded != 40 {
		t.Fatalf("result %+v", r)
	}
	if k.finalRuns.Load() != 1 || k.maxChildRuns() != 1 {
		t.Fatalf("finalizer runs %d, max child runs %d", k.finalRuns.Load(), k.maxChildRuns())
	}
}

func (fe *featEnv) queueCount(q string) int {
	fe.t.Helper()
	p, err := testenv.QueueService(fe.store).NewQueueClient(q).GetProperties(context.Background(), nil)
	if err != nil {
		fe.t.Fatal(err)
	}
	return int(*p.ApproximateMessagesCount)
}

// A job fans out from inside its worker: the batch's parent is the job, its status shows
// the batch, and a retried parent resumes the same batch instead of starting another.
func TestStartBatchFromJob(t *testing.T) {
	t.Parallel()
	k := &batchKinds{}
	fe := newFeatEnv(t, k.registry(), nil)
	ctx := context.Background()
	res, err := fe.client.Enqueue(ctx, fanoutArgs{N: 10}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var bi BatchInfo
	fe.runUntil(60*time.Second, "the parent", func() bool { return fe.ended(res.JobID) })
	if err := fe.client.Result(ctx, res.JobID, &bi); err != nil {
		t.Fatal(err)
	}
	if bi.ParentID != res.JobID || bi.Total != 10 {
		t.Fatalf("batch info %+v", bi)
	}
	defer func() {
		if t.Failed() {
			bs, err := fe.client.Batch(ctx, bi.BatchID, nil)
			t.Logf("batch %+v %v; record %+v; finalizer %+v", bs, err, bs.Record, fe.statusOf(bi.FinalizerJobID))
			for i := 0; i < 10; i++ {
				if !bs.shards[0].Has(i) {
					t.Logf("child %d: %+v", i, fe.statusOf(record.ChildJobID(bi.BatchID, i)))
				}
			}
		}
	}()
	fe.runUntil(60*time.Second, "the finalizer", func() bool { return fe.ended(bi.FinalizerJobID) })
	if r := fe.finalResult(bi.BatchID); r.Sum != 285 {
		t.Fatalf("result %+v", r)
	}
	st := fe.statusOf(res.JobID)
	if st.Batch == nil || st.Batch.BatchID != bi.BatchID || st.Batch.State != record.BatchSucceeded || st.Batch.Succeeded != 10 {
		t.Fatalf("parent status batch %+v", st.Batch)
	}
	if c := fe.statusOf(record.ChildJobID(bi.BatchID, 3)); c.BatchID != bi.BatchID {
		t.Fatalf("child status %+v", c)
	}
	// The same job id and life derive the same batch id: a rerun resumes it.
	jc := &jobContext{client: fe.client, jobID: res.JobID, enqueuedAt: fe.statusOf(res.JobID).EnqueuedAt}
	children := make([]EnqueueParams, 10)
	for i := range children {
		children[i] = EnqueueParams{Args: sqArgs{I: i}}
	}
	again, err := StartBatch(withJobContext(ctx, jc), BatchParams{Children: children})
	if err != nil {
		t.Fatal(err)
	}
	if again.BatchID != bi.BatchID || !again.Resumed || again.State != record.BatchSucceeded {
		t.Fatalf("rerun %+v, first %+v", again, bi)
	}
}

func TestStartBatchValidation(t *testing.T) {
	t.Parallel()
	fe := &featEnv{t: t, store: &storage.Clients{}}
	c := NewClient(fe.store, nil)
	ctx := context.Background()
	for name, p := range map[string]BatchParams{
		"bad id":     {BatchID: "no spaces", Children: []EnqueueParams{{Args: sqArgs{}}}},
		"long id":    {BatchID: string(make([]byte, 0)) + fmt.Sprintf("%0101d", 1)},
		"policy":     {BatchID: "b", FailurePolicy: "sometimes"},
		"child opts": {BatchID: "b", Children: []EnqueueParams{{Args: sqArgs{}, Opts: &EnqueueOptions{DedupeKey: "k"}}}},
		"kind":       {BatchID: "b", Children: []EnqueueParams{{Kind: "bad kind"}}},
	} {
		if _, err := c.StartBatch(ctx, p); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := StartBatch(ctx, BatchParams{}); err == nil {
		t.Error("StartBatch outside a job: no error")
	}
}

func TestBatchShardBits(t *testing.T) {
	s := &record.BatchShard{Size: 10}
	if !s.Set(3, false) || s.Set(3, true) || !s.Set(9, true) {
		t.Fatal("Set must report changes only")
	}
	if d, f := s.Counts(); d != 2 || f != 1 || s.Full() || !s.Has(9) || s.Has(4) {
		t.Fatalf("counts %d %d", d, f)
	}
	for _, n := range []int{0, 1, 15, 16, 17, 33, 1000, 10000, 16384, 20000, 123457} {
		shards, per := batchShards(n)
		b := &record.Batch{Total: n, Shards: shards, PerShard: per}
		sum := 0
		for sh := 0; sh < shards; sh++ {
			if b.ShardLen(sh) < 1 && n > 0 {
				t.Fatalf("total %d: shard %d is empty", n, sh)
			}
			sum += b.ShardLen(sh)
		}
		if sum != n || shards > 1024 || (n > 0 && b.ShardLen(shards) != 0) {
			t.Fatalf("total %d: %d shards of %d hold %d", n, shards, per, sum)
		}
		if n > 0 {
			if s, pos := b.ShardOf(n - 1); s != shards-1 || pos != b.ShardLen(s)-1 {
				t.Fatalf("total %d: last child in shard %d at %d", n, s, pos)
			}
		}
	}
}

// An empty batch ends at once and runs its finalizer.
func TestBatchEmpty(t *testing.T) {
	t.Parallel()
	k := &batchKinds{}
	fe := newFeatEnv(t, k.registry(), nil)
	bi, err := fe.client.StartBatch(context.Background(), BatchParams{Finalizer: &EnqueueParams{Args: sumArgs{}}})
	if err != nil {
		t.Fatal(err)
	}
	if bi.State != record.BatchSucceeded || bi.Total != 0 {
		t.Fatalf("empty batch %+v", bi)
	}
	fe.runUntil(30*time.Second, "the finalizer", func() bool { return fe.ended(bi.FinalizerJobID) })
	if r := fe.finalResult(bi.BatchID); r.Sum != 0 || r.Succeeded != 0 || k.finalRuns.Load() != 1 {
		t.Fatalf("result %+v, runs %d", r, k.finalRuns.Load())
	}
}
