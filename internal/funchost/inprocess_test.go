package funchost

import (
	"context"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"github.com/nightshift-jobs/nightshift/internal/testenv"
)

// inProcessCalls records what an in-process handler received.
type inProcessCalls struct {
	mu    sync.Mutex
	paths []string
	hdrs  []http.Header
	body  []map[string]json.RawMessage
}

func (c *inProcessCalls) n() int { c.mu.Lock(); defer c.mu.Unlock(); return len(c.paths) }

// handler records each request, then answers with answer (nil: {}).
func (c *inProcessCalls) handler(answer func(w http.ResponseWriter, r *http.Request)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		var body map[string]json.RawMessage
		_ = json.Unmarshal(raw, &body)
		c.mu.Lock()
		c.paths = append(c.paths, r.URL.Path)
		c.hdrs = append(c.hdrs, r.Header.Clone())
		c.body = append(c.body, body)
		c.mu.Unlock()
		if answer != nil {
			answer(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{}`))
	})
}

// inProcessFS is an app with no customHandler section (the in-process handler serves it)
// and one queue function per name → queue.
func inProcessFS(a *app, fns map[string]string) fstest.MapFS {
	fsys := fstest.MapFS{"host.json": {Data: []byte(`{"version": "2.0", "functionTimeout": "00:00:30",
  "extensions": {"queues": {"messageEncoding": "none", "batchSize": 8, "newBatchThreshold": 4,
    "maxPollingInterval": "00:00:00.300", "visibilityTimeout": "00:00:00", "maxDequeueCount": 5}}}`)}}
	for name, q := range fns {
		fsys[name+"/function.json"] = &fstest.MapFile{Data: []byte(queueFn(a.expand(q)))}
	}
	return fsys
}

// runFS starts a host built by NewFS and stops it at cleanup.
func (a *app) runFS(fsys fstest.MapFS, opts Options) (*Host, context.CancelFunc, <-chan error) {
	a.t.Helper()
	opts.Settings = a.settings
	opts.Getenv = func(string) string { return "" }
	opts.Logger = discardLogger()
	h, err := NewFS(fsys, "inprocess-app", opts)
	must(a.t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	a.t.Cleanup(cancel)
	return h, cancel, done
}

// TestInProcess_SameRequestAsTheChild sends one message through the child-process host
// and one through a host serving an in-process handler: the handler sees the same path,
// headers and body shape (§1.4, §1.5).
func TestInProcess_SameRequestAsTheChild(t *testing.T) {
	t.Parallel()
	a := newApp(t, testHostJSON{}.render(), map[string]string{"Orders": queueFn("{{p}}-orders")})
	q := a.createQueue("{{p}}-orders")
	a.run(Options{})
	a.enqueue(q, `{"key":"child","do":"ok"}`)
	testenv.WaitFor(t, 20*time.Second, "the child's invocation", func() bool { return len(a.records_("child")) == 1 })
	child := a.records_("child")[0]

	calls := &inProcessCalls{}
	q2 := a.createQueue("{{p}}-orders2")
	h, _, _ := a.runFS(inProcessFS(a, map[string]string{"Orders": "{{p}}-orders2"}), Options{Handler: calls.handler(nil)})
	<-h.Started()
	a.enqueue(q2, `{"key":"inproc","do":"ok"}`)
	testenv.WaitFor(t, 20*time.Second, "the in-process invocation", func() bool { return calls.n() == 1 })
	testenv.WaitFor(t, 10*time.Second, "the message to be deleted", func() bool { return approxCount(t, q2) == 0 })

	calls.mu.Lock()
	defer calls.mu.Unlock()
	if calls.paths[0] != child.Path {
		t.Errorf("path %q, the child got %q", calls.paths[0], child.Path)
	}
	for _, k := range []string{"Content-Type", "X-Azure-Functions-Invocationid", "X-Azure-Functions-Hostversion", "User-Agent"} {
		if calls.hdrs[0].Get(k) == "" || (k != "X-Azure-Functions-Invocationid" && calls.hdrs[0].Get(k) != http.Header(child.Headers).Get(k)) {
			t.Errorf("header %s: in-process %q, child %q", k, calls.hdrs[0].Get(k), http.Header(child.Headers).Get(k))
		}
	}
	var childBody map[string]map[string]json.RawMessage
	must(t, json.Unmarshal(child.Body, &childBody))
	for _, part := range []string{"Data", "Metadata"} {
		var got map[string]json.RawMessage
		must(t, json.Unmarshal(calls.body[0][part], &got))
		if g, w := slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(childBody[part])); !slices.Equal(g, w) {
			t.Errorf("%s keys: in-process %v, child %v", part, g, w)
		}
	}
}

// TestInProcess_FailureReleasesAndPoisons: a non-2xx answer fails the invocation with the
// host's rules, in-process as with a child (dequeue count → poison, §2.5).
func TestInProcess_FailureReleasesAndPoisons(t *testing.T) {
	t.Parallel()
	a := newApp(t, testHostJSON{}.render(), nil)
	q := a.createQueue("{{p}}-fails")
	calls := &inProcessCalls{}
	fail := func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "no", http.StatusInternalServerError) }
	a.runFS(inProcessFS(a, map[string]string{"Fails": "{{p}}-fails"}), Options{Handler: calls.handler(fail)})
	a.enqueue(q, `{"key":"f"}`)
	testenv.WaitFor(t, 60*time.Second, "the message in the poison queue", func() bool {
		return len(peekAll(t, a.queue("{{p}}-fails-poison"))) == 1
	})
	if n := calls.n(); n != 5 {
		t.Errorf("%d invocations, want maxDequeueCount = 5", n)
	}
}

// TestInProcess_ConcurrencyBudget: Options.Concurrency caps the messages in flight per
// listener.
func TestInProcess_ConcurrencyBudget(t *testing.T) {
	t.Parallel()
	a := newApp(t, testHostJSON{}.render(), nil)
	q := a.createQueue("{{p}}-budget")
	var cur, peak atomic.Int64
	release := make(chan struct{})
	calls := &inProcessCalls{}
	block := func(w http.ResponseWriter, r *http.Request) {
		n := cur.Add(1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		<-release
		cur.Add(-1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{}`))
	}
	for range 10 {
		a.enqueue(q, `{}`)
	}
	a.runFS(inProcessFS(a, map[string]string{"Budget": "{{p}}-budget"}), Options{Handler: calls.handler(block), Concurrency: 3})
	testenv.WaitFor(t, 20*time.Second, "3 invocations in flight", func() bool { return cur.Load() == 3 })
	close(release)
	testenv.WaitFor(t, 30*time.Second, "all 10 messages", func() bool { return calls.n() == 10 && approxCount(t, q) == 0 })
	if p := peak.Load(); p != 3 {
		t.Errorf("peak in flight %d, want the budget 3", p)
	}
}

func TestQueueOptionsWithBudget(t *testing.T) {
	base := QueueOptions{BatchSize: 16, NewBatchThreshold: 8}
	for _, c := range []struct{ n, batch, threshold int }{{0, 16, 8}, {1, 1, 0}, {4, 4, 0}, {24, 16, 8}, {64, 16, 48}} {
		got := base.withBudget(c.n)
		if got.BatchSize != c.batch || got.NewBatchThreshold != c.threshold {
			t.Errorf("budget %d: batch %d threshold %d, want %d %d", c.n, got.BatchSize, got.NewBatchThreshold, c.batch, c.threshold)
		}
	}
}

// TestInProcess_ReleaseOnDrainTimeout: a message still being processed at the drain
// deadline is made visible again at once and Run returns without waiting for it.
func TestInProcess_ReleaseOnDrainTimeout(t *testing.T) {
	t.Parallel()
	a := newApp(t, testHostJSON{}.render(), nil)
	q := a.createQueue("{{p}}-long")
	entered := make(chan struct{}, 1)
	stuck := make(chan struct{})
	t.Cleanup(func() { close(stuck) })
	calls := &inProcessCalls{}
	var reqCtx context.Context
	hang := func(_ http.ResponseWriter, r *http.Request) { reqCtx = r.Context(); entered <- struct{}{}; <-stuck }
	_, cancel, done := a.runFS(inProcessFS(a, map[string]string{"Long": "{{p}}-long"}),
		Options{Handler: calls.handler(hang), DrainTimeout: 200 * time.Millisecond, ReleaseOnDrainTimeout: true})
	a.enqueue(q, `{"key":"long"}`)
	<-entered
	if n := len(peekAll(t, q)); n != 0 {
		t.Fatalf("%d visible messages while the invocation runs, want 0", n)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got := peekAll(t, q); len(got) != 1 || got[0] != `{"key":"long"}` {
		t.Fatalf("visible after the drain deadline: %q, want the released message", got)
	}
	// The released invocation goes on undisturbed until the process exits: cancelling it
	// would have a handler record an interrupted attempt for a message it no longer owns.
	if err := reqCtx.Err(); err != nil {
		t.Errorf("the released invocation's context is done (%v) after Run returned", err)
	}
}
