package callback_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azqueue/v2"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/callback"
	"github.com/nightshift-jobs/nightshift/envelope"
	"github.com/nightshift-jobs/nightshift/internal/testenv"
	"github.com/nightshift-jobs/nightshift/storage"
)

const secret = "test-secret"

// knownHMAC was computed independently (Python's hmac module) over
// `1800000000.{"event":"job.succeeded"}` with key "test-secret".
const knownHMAC = "cc0293869d0f4e6aa59e6a99419074c93ea09fd89e4800ab58ef13592208c20b"

func TestSignVerify(t *testing.T) {
	body := []byte(`{"event":"job.succeeded"}`)
	now := time.Unix(1_800_000_000, 0)
	sig := callback.Sign(secret, now.Unix(), body)
	if !strings.HasPrefix(sig, "sha256=") || len(sig) != len("sha256=")+64 {
		t.Fatalf("signature %q", sig)
	}
	ts := "1800000000"
	if err := callback.Verify(secret, ts, sig, body, now.Add(time.Minute), 5*time.Minute); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		secret, ts, sig string
		body            []byte
		now             time.Time
		want            string
	}{
		"wrong secret":  {"other", ts, sig, body, now, "does not match"},
		"changed body":  {secret, ts, sig, []byte(`{"event":"job.dead"}`), now, "does not match"},
		"old timestamp": {secret, ts, sig, body, now.Add(6 * time.Minute), "away from now"},
		"bad timestamp": {secret, "yesterday", sig, body, now, "not unix seconds"},
		"other ts":      {secret, "1800000001", sig, body, now, "does not match"},
	} {
		if err := callback.Verify(tc.secret, tc.ts, tc.sig, tc.body, tc.now, 5*time.Minute); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want error containing %q", name, err, tc.want)
		}
	}
}

func TestSignKnownAnswer(t *testing.T) {
	got := callback.Sign(secret, 1_800_000_000, []byte(`{"event":"job.succeeded"}`))
	want := "sha256=" + knownHMAC
	if got != want {
		t.Fatalf("Sign = %s, want %s", got, want)
	}
}

type workArgs struct {
	Fail bool `json:"fail"`
}

func (workArgs) Kind() string { return "test.work" }

type fixture struct {
	t      *testing.T
	store  *storage.Clients
	client *nightshift.Client
	h      *nightshift.Handler
}

func newFixture(t *testing.T, opts callback.Options) *fixture {
	t.Helper()
	store := testenv.Clients(t)
	reg := nightshift.NewRegistry()
	nightshift.AddWorkerFunc(reg, func(ctx context.Context, job *nightshift.Job[workArgs]) (any, error) {
		if job.Args.Fail {
			return nil, nightshift.Permanentf("failing on purpose")
		}
		return map[string]string{"done": job.ID}, nil
	}, nil)
	opts.Backoff = nightshift.ConstantBackoff(0)
	if opts.MaxAttempts == 0 {
		opts.MaxAttempts = 4
	}
	if err := callback.Register(reg, store, opts); err != nil {
		t.Fatal(err)
	}
	h := nightshift.NewHandler(reg, store, &nightshift.HandlerOptions{
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), OnJobEnd: callback.OnJobEnd(store),
	})
	return &fixture{t: t, store: store, client: nightshift.NewClient(store, nil), h: h}
}

// runJobs plays the queue trigger (functions-host-contract.md §1.5) until the jobs queue
// and its poison queue stay empty, delivering each message to RunJob or RunDeadLetter and
// deleting it after a 2xx.
func (f *fixture) runJobs() {
	f.t.Helper()
	testenv.Drain(f.t, f.store, f.h, f.store.Layout.JobsQueue(), nightshift.FunctionRunJob, nightshift.FunctionRunDeadLetter)
}

// receiver is a webhook endpoint that answers with the given statuses in turn (then 200)
// and checks every signature.
type receiver struct {
	t        *testing.T
	mu       sync.Mutex
	answers  []int
	requests []*http.Request
	bodies   [][]byte
	srv      *httptest.Server
}

func newReceiver(t *testing.T, answers ...int) *receiver {
	r := &receiver{t: t, answers: answers}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		if err := callback.Verify(secret, req.Header.Get(callback.HeaderTimestamp), req.Header.Get(callback.HeaderSignature), body, time.Now(), time.Minute); err != nil {
			t.Errorf("webhook signature: %v", err)
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		r.requests = append(r.requests, req)
		r.bodies = append(r.bodies, body)
		code := 200
		if len(r.answers) > 0 {
			code, r.answers = r.answers[0], r.answers[1:]
		}
		w.WriteHeader(code)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.requests)
}

func TestWebhookRetriedUntilDelivered(t *testing.T) {
	f := newFixture(t, callback.Options{Secret: secret, AllowPrivate: true, AllowHTTP: true})
	rcv := newReceiver(t, 503, 500)
	ctx := context.Background()
	res, err := f.client.Enqueue(ctx, workArgs{}, &nightshift.EnqueueOptions{CallbackURL: rcv.srv.URL + "/hook?token=abc"})
	if err != nil {
		t.Fatal(err)
	}
	f.runJobs()
	if n := rcv.count(); n != 3 {
		t.Fatalf("receiver got %d requests, want 3 (503, 500, then 200)", n)
	}
	var p callback.Payload
	if err := json.Unmarshal(rcv.bodies[2], &p); err != nil {
		t.Fatal(err)
	}
	if p.Event != callback.EventSucceeded || p.JobID != res.JobID || p.Kind != "test.work" || p.Status == nil ||
		p.Status.State != storage.StateSucceeded || p.Status.Result == nil || p.DeliveryID == "" {
		t.Fatalf("payload = %s", rcv.bodies[2])
	}
	req := rcv.requests[2]
	if req.Header.Get(callback.HeaderEvent) != "job.succeeded" || req.Header.Get(callback.HeaderDelivery) != p.DeliveryID ||
		req.Header.Get("Content-Type") != "application/json" || req.URL.Query().Get("token") != "abc" {
		t.Errorf("headers = %v, url %s", req.Header, req.URL)
	}
	st, _ := f.client.Status(ctx, res.JobID)
	cb := st.Callback
	if cb == nil || !cb.Delivered || cb.Attempts != 3 || cb.LastStatus != 200 || cb.Event != "job.succeeded" ||
		cb.DeliveredAt.IsZero() || strings.Contains(cb.Target, "token") || !strings.HasPrefix(cb.Target, rcv.srv.URL) {
		t.Fatalf("callback outcome = %+v", cb)
	}
	// The delivery job has its own status, under the derived id.
	ds, err := f.client.Status(ctx, p.DeliveryID)
	if err != nil || ds.State != storage.StateSucceeded || ds.Kind != callback.Kind || ds.Attempt != 3 {
		t.Fatalf("delivery job status = %+v, %v", ds, err)
	}
}

func TestWebhookRefusals(t *testing.T) {
	rcv := newReceiver(t)
	loopbackName := strings.Replace(rcv.srv.URL, "127.0.0.1", "localhost", 1)
	cases := []struct {
		name   string
		opts   callback.Options
		url    string
		answer int
		want   string
	}{
		{"loopback address", callback.Options{Secret: secret, AllowHTTP: true}, rcv.srv.URL, 0, "loopback address"},
		{"name resolving to loopback", callback.Options{Secret: secret, AllowHTTP: true}, loopbackName, 0, "loopback address"},
		{"plain http", callback.Options{Secret: secret, AllowPrivate: true}, rcv.srv.URL, 0, "plain http"},
		{"no secret", callback.Options{AllowPrivate: true, AllowHTTP: true}, rcv.srv.URL, 0, callback.SettingWebhookSecret},
		{"4xx answer", callback.Options{Secret: secret, AllowPrivate: true, AllowHTTP: true}, rcv.srv.URL, 410, "410 Gone"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := rcv.count()
			if tc.answer != 0 {
				rcv.mu.Lock()
				rcv.answers = []int{tc.answer}
				rcv.mu.Unlock()
			}
			f := newFixture(t, tc.opts)
			ctx := context.Background()
			res, err := f.client.Enqueue(ctx, workArgs{}, &nightshift.EnqueueOptions{CallbackURL: tc.url})
			if err != nil {
				t.Fatal(err)
			}
			f.runJobs()
			wantRequests := 0
			if tc.answer != 0 {
				wantRequests = 1
			}
			if got := rcv.count() - before; got != wantRequests {
				t.Fatalf("receiver got %d requests, want %d", got, wantRequests)
			}
			st, _ := f.client.Status(ctx, res.JobID)
			cb := st.Callback
			if st.State != storage.StateSucceeded || cb == nil || cb.Delivered || cb.Attempts != 1 || !strings.Contains(cb.LastError, tc.want) {
				t.Fatalf("status %s, callback outcome = %+v, want undelivered after 1 attempt with %q", st.State, cb, tc.want)
			}
			// Refusals are permanent: the delivery job is dead at once, not retried.
			ds, err := f.client.Status(ctx, callback.DeliveryID(res.EnqueuedAt, res.JobID, 0, callback.EventSucceeded))
			if err != nil || ds.State != storage.StateDead || ds.Attempt != 1 {
				t.Fatalf("delivery status = %+v, %v", ds, err)
			}
		})
	}
}

func TestQueueCallbackAndDeadEvent(t *testing.T) {
	f := newFixture(t, callback.Options{})
	ctx := context.Background()
	target := f.store.Layout.Name("done-events")
	res, err := f.client.Enqueue(ctx, workArgs{}, &nightshift.EnqueueOptions{CallbackQueue: target})
	if err != nil {
		t.Fatal(err)
	}
	f.runJobs()
	msgs, err := f.store.Queue.NewQueueClient(target).DequeueMessages(ctx, &azqueue.DequeueMessagesOptions{NumberOfMessages: to.Ptr[int32](32)})
	if err != nil || len(msgs.Messages) != 1 {
		t.Fatalf("callback queue: %v, %d messages", err, len(msgs.Messages))
	}
	var p callback.Payload
	if err := json.Unmarshal([]byte(*msgs.Messages[0].MessageText), &p); err != nil || p.Event != "job.succeeded" || p.JobID != res.JobID {
		t.Fatalf("queue message %s (%v)", *msgs.Messages[0].MessageText, err)
	}
	st, _ := f.client.Status(ctx, res.JobID)
	if st.Callback == nil || !st.Callback.Delivered || st.Callback.Target != "queue:"+target {
		t.Fatalf("callback outcome = %+v", st.Callback)
	}

	// A dead job: the executor calls the hook when RunDeadLetter records it, and the
	// delivery reports job.dead. Calling the hook again (a redelivered poison message)
	// does not deliver twice.
	hook := callback.OnJobEnd(f.store)
	dead, err := f.client.Enqueue(ctx, workArgs{Fail: true}, &nightshift.EnqueueOptions{CallbackQueue: target})
	if err != nil {
		t.Fatal(err)
	}
	f.runJobs()
	dst, _ := f.client.Status(ctx, dead.JobID)
	if dst.State != storage.StateDead {
		t.Fatalf("status = %s, want dead", dst.State)
	}
	env := &envelope.Envelope{JobID: dead.JobID, Kind: "test.work", EnqueuedAt: dead.EnqueuedAt, Callback: &envelope.Callback{Queue: target}}
	for range 2 {
		if err := hook(ctx, env, dst); err != nil {
			t.Fatal(err)
		}
	}
	f.runJobs()
	msgs, err = f.store.Queue.NewQueueClient(target).DequeueMessages(ctx, &azqueue.DequeueMessagesOptions{NumberOfMessages: to.Ptr[int32](32)})
	if err != nil {
		t.Fatal(err)
	}
	var events []string
	for _, m := range msgs.Messages {
		var p callback.Payload
		_ = json.Unmarshal([]byte(*m.MessageText), &p)
		if p.JobID == dead.JobID {
			events = append(events, p.Event)
			if p.Status.State != storage.StateDead || p.Status.LastError == "" {
				t.Errorf("dead payload status = %+v", p.Status)
			}
		}
	}
	if len(events) != 1 || events[0] != "job.dead" {
		t.Fatalf("events for the dead job = %v, want exactly one job.dead", events)
	}
	if dst, _ = f.client.Status(ctx, dead.JobID); dst.Callback == nil || dst.Callback.Event != "job.dead" || !dst.Callback.Delivered {
		t.Fatalf("dead job callback outcome = %+v", dst.Callback)
	}
	// A job without a callback, or still running, is not notified.
	if err := hook(ctx, &envelope.Envelope{JobID: "x", Kind: "k"}, &storage.Status{JobID: "x", State: storage.StateSucceeded}); err != nil {
		t.Fatal(err)
	}
	if err := hook(ctx, env, &storage.Status{JobID: dead.JobID, State: storage.StateRetrying}); err != nil {
		t.Fatal(err)
	}
	if d, _ := f.client.QueueDepths(ctx); d[0].Messages != 0 {
		t.Fatalf("hook enqueued %d deliveries for jobs that should not be notified", d[0].Messages)
	}
}
