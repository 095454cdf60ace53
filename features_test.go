package nightshift

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nightshift-jobs/nightshift/envelope"
	"github.com/nightshift-jobs/nightshift/internal/testenv"
	"github.com/nightshift-jobs/nightshift/record"
	"github.com/nightshift-jobs/nightshift/storage"
)

type blobArgs struct {
	Data string `json:"data"`
}

func (blobArgs) Kind() string { return "test.blob" }

type progArgs struct{ Steps int }

func (progArgs) Kind() string { return "test.progress" }

func featureRegistry() *Registry {
	reg := NewRegistry()
	AddWorkerFunc(reg, func(ctx context.Context, j *Job[blobArgs]) (any, error) {
		sum := sha256.Sum256([]byte(j.Args.Data))
		return map[string]any{"len": len(j.Args.Data), "sha": hex.EncodeToString(sum[:])}, nil
	}, nil)
	AddWorkerFunc(reg, func(ctx context.Context, j *Job[progArgs]) (any, error) {
		for i := 1; i <= j.Args.Steps; i++ {
			j.Progress(ctx, float64(i)/float64(j.Args.Steps), strings.Repeat("x", i%3)+" step")
			time.Sleep(10 * time.Millisecond)
		}
		j.Progress(ctx, 1, "all done")
		return nil, nil
	}, nil)
	AddWorkerFunc(reg, func(ctx context.Context, j *Job[sqArgs]) (any, error) { return j.Args.I, nil }, nil)
	return reg
}

// A 1 MiB args value goes through the claim check (Blob + args_ref with sha256) and the
// job sees it unchanged; the payload is deleted once the job succeeded.
func TestClaimCheckRoundTrip(t *testing.T) {
	t.Parallel()
	fe := newFeatEnv(t, featureRegistry(), nil)
	ctx := context.Background()
	data := strings.Repeat("0123456789abcdef", 1<<16) // 1 MiB
	res, err := fe.client.Enqueue(ctx, blobArgs{Data: data}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Bytes > envelope.MaxMessageBytes/8 {
		t.Fatalf("message is %d bytes; the args should be in Blob", res.Bytes)
	}
	name := storage.ArgsPayloadBlob(res.JobID)
	if _, err := fe.store.GetPayload(ctx, name, 1<<30); err != nil {
		t.Fatalf("payload blob: %v", err)
	}
	fe.runUntil(30*time.Second, "the job", func() bool { return fe.ended(res.JobID) })
	var out struct {
		Len int
		Sha string
	}
	if err := fe.client.Result(ctx, res.JobID, &out); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(data))
	if out.Len != len(data) || out.Sha != hex.EncodeToString(sum[:]) {
		t.Fatalf("job saw %d bytes sha %s", out.Len, out.Sha)
	}
	if _, err := fe.store.GetPayload(ctx, name, 1<<30); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("payload of a succeeded job still there: %v", err)
	}
}

// Args over the maximum are refused before anything is stored; a tampered payload kills
// the job with a permanent error instead of running it on the wrong input.
func TestClaimCheckLimits(t *testing.T) {
	t.Parallel()
	fe := newFeatEnv(t, featureRegistry(), nil)
	ctx := context.Background()
	env := &envelope.Envelope{JobID: "big-1", Kind: "test.blob", Args: []byte(`"` + strings.Repeat("x", 2000) + `"`)}
	err := claimCheck(ctx, fe.store, env, 1000)
	var pe *PayloadTooLargeError
	if !errors.Is(err, ErrPayloadTooLarge) || !errors.As(err, &pe) || pe.Max != 1000 || !strings.Contains(err.Error(), SettingMaxPayloadBytes) {
		t.Fatalf("err %v", err)
	}
	if n, err := MaxPayloadBytesFromEnv(func(string) string { return "" }); n != DefaultMaxPayloadBytes || err != nil {
		t.Fatalf("default max %d %v", n, err)
	}
	if _, err := MaxPayloadBytesFromEnv(func(string) string { return "lots" }); !storage.IsSettingError(err) {
		t.Fatalf("bad setting: %v", err)
	}
	// Tampered payload.
	big := blobArgs{Data: strings.Repeat("y", ClaimCheckThreshold+10)}
	res, err := fe.client.Enqueue(ctx, big, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := fe.store.PutPayload(ctx, storage.ArgsPayloadBlob(res.JobID), "application/json", []byte(`{"data":"evil"}`)); err != nil {
		t.Fatal(err)
	}
	fe.runUntil(30*time.Second, "the job", func() bool { return fe.ended(res.JobID) })
	st := fe.statusOf(res.JobID)
	if st.State != record.StateDead || !strings.Contains(st.LastError, "args_ref says") {
		t.Fatalf("status %s: %s", st.State, st.LastError)
	}
}

// Many concurrent enqueues with one dedupe key: exactly one job exists; the key is free
// again once the job ended, and a lock left by an ended job is taken over.
func TestDedupeKeyConcurrentEnqueues(t *testing.T) {
	t.Parallel()
	fe := newFeatEnv(t, featureRegistry(), nil)
	ctx := context.Background()
	const n = 24
	var wg sync.WaitGroup
	results := make([]*EnqueueResult, n)
	errs := make([]error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = fe.client.Enqueue(ctx, sqArgs{I: i}, &EnqueueOptions{DedupeKey: "report:2026-11"})
		}()
	}
	wg.Wait()
	var winner string
	for i := range errs {
		if errs[i] == nil {
			if winner != "" {
				t.Fatalf("two enqueues won: %s and %s", winner, results[i].JobID)
			}
			winner = results[i].JobID
		}
	}
	if winner == "" {
		t.Fatalf("no enqueue won: %v", errs[0])
	}
	for i, err := range errs {
		var de *DuplicateJobError
		if err != nil && (!errors.As(err, &de) || de.JobID != winner) {
			t.Fatalf("enqueue %d: %v", i, err)
		}
	}
	ids, err := fe.store.ListStatuses(ctx)
	if err != nil || len(ids) != 1 || ids[0] != winner {
		t.Fatalf("statuses %v %v", ids, err)
	}
	if n := fe.queueCount(fe.store.Layout.JobsQueue()); n != 1 {
		t.Fatalf("%d messages on the queue", n)
	}
	fe.runUntil(30*time.Second, "the job", func() bool { return fe.ended(winner) })
	if _, _, err := fe.store.GetUniqueLock(ctx, "report:2026-11"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("lock after the job ended: %v", err)
	}
	second, err := fe.client.Enqueue(ctx, sqArgs{I: 99}, &EnqueueOptions{DedupeKey: "report:2026-11"})
	if err != nil {
		t.Fatal(err)
	}
	// A lock whose job ended without freeing it (crash before the hook) is stale.
	if _, _, err := fe.store.UpdateStatus(ctx, second.JobID, func(cur *record.Status) *record.Status {
		next := *cur
		next.State = record.StateCancelled
		return &next
	}); err != nil {
		t.Fatal(err)
	}
	third, err := fe.client.Enqueue(ctx, sqArgs{I: 100}, &EnqueueOptions{DedupeKey: "report:2026-11"})
	if err != nil {
		t.Fatalf("takeover of a stale lock: %v", err)
	}
	l, _, err := fe.store.GetUniqueLock(ctx, "report:2026-11")
	if err != nil || l.JobID != third.JobID {
		t.Fatalf("lock %+v %v", l, err)
	}
	// A lock whose job never got a status (enqueue died) is held for the grace period.
	env := &envelope.Envelope{JobID: "ghost-2", Kind: "test.sq", DedupeKey: "k2"}
	if err := acquireUnique(ctx, fe.store, &envelope.Envelope{JobID: "ghost-1", Kind: "test.sq", DedupeKey: "k2"}, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := acquireUnique(ctx, fe.store, env, time.Now()); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("young ghost lock: %v", err)
	}
	if err := acquireUnique(ctx, fe.store, env, time.Now().Add(UniqueLockGrace+time.Minute)); err != nil {
		t.Fatalf("old ghost lock: %v", err)
	}
}

// Progress: reported 30 times in ~300 ms with a 100 ms interval, it is written a few times
// (not 30), the last value ends up in the final status, and a running job's status shows
// the progress while it runs.
func TestProgressThrottledAndFlushed(t *testing.T) {
	t.Parallel()
	ct := &countingTransport{next: http.DefaultClient}
	store, err := storage.FromEnv(testenv.Env(t), &storage.Options{Transport: ct})
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Ensure(context.Background()); err != nil {
		t.Fatal(err)
	}
	fe := newFeatEnv(t, featureRegistry(), &HandlerOptions{ProgressInterval: 100 * time.Millisecond, RunningAfter: time.Hour})
	fe.h = NewHandler(featureRegistry(), store, &HandlerOptions{ProgressInterval: 100 * time.Millisecond, RunningAfter: time.Hour, Logger: fe.h.log})
	fe.srv.Config.Handler = fe.h
	fe.store, fe.client = store, NewClient(store, nil)
	ctx := context.Background()
	res, err := fe.client.Enqueue(ctx, progArgs{Steps: 30}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ct.mu.Lock()
	ct.calls = nil
	ct.mu.Unlock()
	var seen *record.Progress
	fe.runUntil(30*time.Second, "the job", func() bool {
		st := fe.statusOf(res.JobID)
		if st != nil && st.State == record.StateRunning && st.Progress != nil {
			seen = st.Progress
		}
		return st != nil && st.State.Terminal()
	})
	st := fe.statusOf(res.JobID)
	if st.State != record.StateSucceeded || st.Progress == nil || st.Progress.Fraction != 1 || st.Progress.Message != "all done" {
		t.Fatalf("final status %s progress %+v", st.State, st.Progress)
	}
	if seen == nil || seen.Fraction <= 0 || seen.Fraction > 1 {
		t.Fatalf("progress while running: %+v", seen)
	}
	ct.mu.Lock()
	puts := 0
	for _, c := range ct.calls {
		if strings.HasPrefix(c, "PUT ") && strings.Contains(c, "/"+store.Layout.StatusContainer()+"/") {
			puts++
		}
	}
	ct.mu.Unlock()
	// ~300 ms of reports at one write per 100 ms: a handful of progress writes plus the
	// final status — far fewer than the 31 reports.
	if puts < 2 || puts > 8 {
		t.Fatalf("%d status writes for 31 progress reports", puts)
	}
}

// Priorities map to the three queues and their functions; retries stay on the queue the
// job came from.
func TestPriorityQueues(t *testing.T) {
	t.Parallel()
	fe := newFeatEnv(t, featureRegistry(), nil)
	ctx := context.Background()
	l := fe.store.Layout
	for p, want := range map[Priority]string{PriorityHigh: l.HighQueue(), PriorityNormal: l.JobsQueue(), PriorityLow: l.LowQueue()} {
		q, err := fe.client.PriorityQueue(p)
		if err != nil || q != want {
			t.Fatalf("%s: %q %v", p, q, err)
		}
		if pp, err := ParsePriority(p.String()); err != nil || pp != p {
			t.Fatalf("parse %s: %v %v", p, pp, err)
		}
	}
	if _, err := ParsePriority("urgent"); err == nil {
		t.Fatal("urgent parsed")
	}
	if _, err := fe.client.PriorityQueue(Priority(7)); err == nil {
		t.Fatal("priority 7 accepted")
	}
	low, _ := fe.client.PriorityQueue(PriorityLow)
	res, err := fe.client.Enqueue(ctx, sqArgs{I: 1}, &EnqueueOptions{Queue: low})
	if err != nil {
		t.Fatal(err)
	}
	fe.runUntil(30*time.Second, "the low job", func() bool { return fe.ended(res.JobID) })
	if st := fe.statusOf(res.JobID); st.State != record.StateSucceeded || st.Queue != low {
		t.Fatalf("status %s on %s", st.State, st.Queue)
	}
	for _, fn := range []string{FunctionRunJobHigh, FunctionRunJobLow, FunctionRunDeadLetterHigh, FunctionRunDeadLetterLow} {
		fe.h.mu.RLock()
		_, ok := fe.h.funcs[fn]
		fe.h.mu.RUnlock()
		if !ok {
			t.Errorf("handler does not serve %s", fn)
		}
	}
}

// Enqueue options of this change: Priority picks the queue, DedupeReturnExisting returns
// the holder, MaxPayloadBytes (or NIGHTSHIFT_MAX_PAYLOAD_BYTES) refuses large args clearly.
func TestEnqueueOptionsPriorityDedupePayload(t *testing.T) {
	t.Parallel()
	fe := newFeatEnv(t, featureRegistry(), nil)
	ctx := context.Background()
	res, err := fe.client.Enqueue(ctx, sqArgs{I: 1}, &EnqueueOptions{Priority: PriorityHigh})
	if err != nil || res.Queue != fe.store.Layout.HighQueue() {
		t.Fatalf("high: %+v %v", res, err)
	}
	if _, err := fe.client.Enqueue(ctx, sqArgs{I: 1}, &EnqueueOptions{Priority: Priority(9)}); err == nil {
		t.Fatal("priority 9 accepted")
	}
	first, err := fe.client.Enqueue(ctx, sqArgs{I: 2}, &EnqueueOptions{DedupeKey: "once"})
	if err != nil {
		t.Fatal(err)
	}
	again, err := fe.client.Enqueue(ctx, sqArgs{I: 3}, &EnqueueOptions{DedupeKey: "once", DedupeReturnExisting: true})
	if err != nil || !again.Existing || again.JobID != first.JobID {
		t.Fatalf("return existing: %+v %v", again, err)
	}
	small := NewClient(fe.store, &ClientOptions{MaxPayloadBytes: 1024})
	_, err = small.Enqueue(ctx, blobArgs{Data: strings.Repeat("z", 2048)}, nil)
	if !errors.Is(err, ErrPayloadTooLarge) || !strings.Contains(err.Error(), "2059 bytes; the maximum is 1024") {
		t.Fatalf("over the maximum: %v", err)
	}
	getenv := testenv.Env(t, SettingMaxPayloadBytes, "100")
	c, err := NewClientFromEnv(getenv)
	if err != nil {
		t.Fatal(err)
	}
	if c.maxPayload() != 100 {
		t.Fatalf("max payload from the setting: %d", c.maxPayload())
	}
	if _, err := NewClientFromEnv(testenv.Env(t, SettingMaxPayloadBytes, "-1")); !storage.IsSettingError(err) {
		t.Fatalf("bad setting: %v", err)
	}
}
