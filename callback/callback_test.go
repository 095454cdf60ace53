package callback_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
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
	"github.com/nightshift-jobs/nightshift/record"
	"github.com/nightshift-jobs/nightshift/storage"
)

// Two secrets in the Standard Webhooks form (whsec_ + base64 of 32 bytes).
const (
	secret      = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=" // bytes 0..31
	otherSecret = "whsec_ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=" // bytes 32..63
)

// knownSig was computed independently (Python's hmac and base64 modules) over
// `msg_1.1800000000.{"event":"job.succeeded"}` with the key bytes 0..31.
const knownSig = "v1,6lSt6Nodksohjsy4LB9/KUvp91ie1e7VOC8oFrNKJZw="

// handSign computes one v1 signature without the package: HMAC-SHA256 over
// "<id>.<timestamp>.<body>" keyed with the base64-decoded part of the secret.
func handSign(t *testing.T, secret, id, ts string, body []byte) string {
	t.Helper()
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		t.Fatal(err)
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + ts + "."))
	mac.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

func signedHeader(t *testing.T, secrets []string, id string, at time.Time, body []byte) http.Header {
	t.Helper()
	sig, err := callback.Sign(secrets, id, at, body)
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{}
	h.Set(callback.HeaderWebhookID, id)
	h.Set(callback.HeaderWebhookTimestamp, strconv.FormatInt(at.Unix(), 10))
	h.Set(callback.HeaderWebhookSignature, sig)
	return h
}

func TestSignKnownAnswer(t *testing.T) {
	body := []byte(`{"event":"job.succeeded"}`)
	got, err := callback.Sign([]string{secret}, "msg_1", time.Unix(1_800_000_000, 0), body)
	if err != nil {
		t.Fatal(err)
	}
	if got != knownSig {
		t.Fatalf("Sign = %s, want %s", got, knownSig)
	}
	if hand := handSign(t, secret, "msg_1", "1800000000", body); hand != knownSig {
		t.Fatalf("hand-computed %s, want %s", hand, knownSig)
	}
}

func TestSignVerify(t *testing.T) {
	body := []byte(`{"event":"job.succeeded"}`)
	now := time.Unix(1_800_000_000, 0)
	h := signedHeader(t, []string{secret}, "msg_1", now, body)
	if err := callback.Verify([]string{secret}, h, body, now.Add(time.Minute), 5*time.Minute); err != nil {
		t.Fatal(err)
	}
	with := func(k, v string) http.Header {
		c := h.Clone()
		if v == "" {
			c.Del(k)
		} else {
			c.Set(k, v)
		}
		return c
	}
	for name, tc := range map[string]struct {
		secrets   []string
		header    http.Header
		body      []byte
		now       time.Time
		tolerance time.Duration
		want      string
	}{
		"wrong secret":      {[]string{otherSecret}, h, body, now, time.Minute, "no signature matches"},
		"changed body":      {[]string{secret}, h, []byte(`{"event":"job.dead"}`), now, time.Minute, "no signature matches"},
		"changed id":        {[]string{secret}, with(callback.HeaderWebhookID, "msg_2"), body, now, time.Minute, "no signature matches"},
		"other timestamp":   {[]string{secret}, with(callback.HeaderWebhookTimestamp, "1800000001"), body, now, time.Minute, "no signature matches"},
		"old timestamp":     {[]string{secret}, h, body, now.Add(6 * time.Minute), 5 * time.Minute, "6m0s old; at most 5m0s"},
		"future timestamp":  {[]string{secret}, h, body, now.Add(-6 * time.Minute), 5 * time.Minute, "6m0s in the future"},
		"bad timestamp":     {[]string{secret}, with(callback.HeaderWebhookTimestamp, "yesterday"), body, now, time.Minute, "not unix seconds"},
		"no id":             {[]string{secret}, with(callback.HeaderWebhookID, ""), body, now, time.Minute, "header missing"},
		"no signature":      {[]string{secret}, with(callback.HeaderWebhookSignature, ""), body, now, time.Minute, "header missing"},
		"v2 signature only": {[]string{secret}, with(callback.HeaderWebhookSignature, strings.Replace(h.Get(callback.HeaderWebhookSignature), "v1,", "v2,", 1)), body, now, time.Minute, "no signature matches"},
		"no secrets":        {nil, h, body, now, time.Minute, "no secret"},
		"empty secret":      {[]string{""}, h, body, now, time.Minute, "is empty"},
		"empty among valid": {[]string{secret, ""}, h, body, now, time.Minute, "secret 2 is empty"},
		"raw secret":        {[]string{"test-secret"}, h, body, now, time.Minute, "whsec_"},
		"short secret":      {[]string{"whsec_AAEC"}, h, body, now, time.Minute, "decodes to 3 bytes"},
		"zero tolerance":    {[]string{secret}, h, body, now, 0, "not positive"},
	} {
		if err := callback.Verify(tc.secrets, tc.header, tc.body, tc.now, tc.tolerance); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want error containing %q", name, err, tc.want)
		}
	}
	// Signing refuses what verifying refuses.
	for name, secrets := range map[string][]string{"none": nil, "empty": {""}, "raw": {"test-secret"}} {
		if _, err := callback.Sign(secrets, "msg_1", now, body); err == nil {
			t.Errorf("Sign with %s secrets: no error", name)
		}
	}
	if _, err := callback.Sign([]string{secret}, "", now, body); err == nil {
		t.Error("Sign with an empty id: no error")
	}
}

// TestSignRotation: two secrets give two v1 signatures, and a receiver holding either
// one (or both) accepts the request.
func TestSignRotation(t *testing.T) {
	body := []byte(`{"event":"job.dead"}`)
	now := time.Unix(1_800_000_000, 0)
	h := signedHeader(t, []string{secret, otherSecret}, "msg_r", now, body)
	sigs := strings.Split(h.Get(callback.HeaderWebhookSignature), " ")
	want := []string{handSign(t, secret, "msg_r", "1800000000", body), handSign(t, otherSecret, "msg_r", "1800000000", body)}
	if len(sigs) != 2 || sigs[0] != want[0] || sigs[1] != want[1] {
		t.Fatalf("signatures %q, want %q", sigs, want)
	}
	for _, receiver := range [][]string{{secret}, {otherSecret}, {otherSecret, secret}} {
		if err := callback.Verify(receiver, h, body, now, time.Minute); err != nil {
			t.Errorf("receiver with %d secret(s): %v", len(receiver), err)
		}
	}
	third := "whsec_" + base64.StdEncoding.EncodeToString([]byte(strings.Repeat("k", 32)))
	if err := callback.Verify([]string{third}, h, body, now, time.Minute); err == nil {
		t.Error("a receiver with neither secret accepted the request")
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

// newFixture registers the callback kind with opts; queues are base names of callback
// queues to allow (made full names with the test's prefix).
func newFixture(t *testing.T, opts callback.Options, queues ...string) *fixture {
	t.Helper()
	store := testenv.Clients(t)
	for _, q := range queues {
		opts.Queues = append(opts.Queues, store.Layout.Name(q))
	}
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

// runJobs plays the queue trigger (docs/host-contract.md §1.5) until the jobs queue
// and its poison queue stay empty, delivering each message to RunJob or RunDeadLetter and
// deleting it after a 2xx.
func (f *fixture) runJobs() {
	f.t.Helper()
	testenv.Drain(f.t, f.store, f.h, f.store.Layout.JobsQueue(), nightshift.FunctionRunJob, nightshift.FunctionRunDeadLetter)
}

// receiver is a webhook endpoint that answers with the given statuses in turn (then 200)
// and checks every signature twice: with Verify, holding only the secret it was given,
// and by hand (the HMAC computed here over "<id>.<timestamp>.<body>" must be one of the
// header's v1 signatures).
type receiver struct {
	t        *testing.T
	secret   string
	mu       sync.Mutex
	answers  []int
	requests []*http.Request
	bodies   [][]byte
	srv      *httptest.Server
}

func newReceiver(t *testing.T, answers ...int) *receiver {
	return newReceiverWith(t, secret, answers...)
}

func newReceiverWith(t *testing.T, key string, answers ...int) *receiver {
	r := &receiver{t: t, secret: key, answers: answers}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		if err := callback.Verify([]string{r.secret}, req.Header, body, time.Now(), time.Minute); err != nil {
			t.Errorf("webhook signature: %v", err)
		}
		hand := handSign(t, r.secret, req.Header.Get(callback.HeaderWebhookID), req.Header.Get(callback.HeaderWebhookTimestamp), body)
		if !slices.Contains(strings.Split(req.Header.Get(callback.HeaderWebhookSignature), " "), hand) {
			t.Errorf("webhook-signature %q lacks the hand-computed %s", req.Header.Get(callback.HeaderWebhookSignature), hand)
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

// secretsFor returns webhook secrets for the origin of rawURL.
func secretsFor(t *testing.T, rawURL string, secrets ...string) *callback.WebhookSecrets {
	t.Helper()
	w, err := callback.NewWebhookSecrets(map[string][]string{rawURL: secrets})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func (r *receiver) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.requests)
}

func TestWebhookRetriedUntilDelivered(t *testing.T) {
	rcv := newReceiver(t, 503, 500)
	f := newFixture(t, callback.Options{Secrets: secretsFor(t, rcv.srv.URL, secret), AllowPrivate: true, AllowHTTP: true})
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
		p.Status.State != record.StateSucceeded || p.Status.Result == nil || p.DeliveryID == "" {
		t.Fatalf("payload = %s", rcv.bodies[2])
	}
	req := rcv.requests[2]
	checkWebhookIDs(t, rcv.requests, p.DeliveryID, callback.DeliveryID(res.EnqueuedAt, res.JobID, 0, callback.EventSucceeded))
	if req.Header.Get(callback.HeaderEvent) != "job.succeeded" ||
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
	if err != nil || ds.State != record.StateSucceeded || ds.Kind != callback.Kind || ds.Attempt != 3 {
		t.Fatalf("delivery job status = %+v, %v", ds, err)
	}
}

// checkWebhookIDs: webhook-id is the delivery job's id (derived from the job id, its life
// and the event) on every attempt: the same across retries.
func checkWebhookIDs(t *testing.T, requests []*http.Request, deliveryID, derived string) {
	t.Helper()
	if deliveryID != derived {
		t.Errorf("delivery id %s is not derived from the job id and event (%s)", deliveryID, derived)
	}
	for i, r := range requests {
		if id := r.Header.Get(callback.HeaderWebhookID); id != deliveryID {
			t.Errorf("attempt %d: webhook-id %q, want the delivery id %q", i+1, id, deliveryID)
		}
	}
}

func TestWebhookRefusals(t *testing.T) {
	rcv := newReceiver(t)
	loopbackName := strings.Replace(rcv.srv.URL, "127.0.0.1", "localhost", 1)
	both := secretsFor(t, rcv.srv.URL, secret)
	if _, err := both.For(loopbackName); err != nil { // localhost is another origin: give it the secret too
		both, _ = callback.NewWebhookSecrets(map[string][]string{rcv.srv.URL: {secret}, loopbackName: {secret}})
	}
	otherOrigin := "http://127.0.0.1:1"
	cases := []struct {
		name   string
		opts   callback.Options
		url    string
		answer int
		want   string
	}{
		{"loopback address", callback.Options{Secrets: both, AllowHTTP: true}, rcv.srv.URL, 0, "loopback address"},
		{"name resolving to loopback", callback.Options{Secrets: both, AllowHTTP: true}, loopbackName, 0, "loopback address"},
		{"plain http", callback.Options{Secrets: both, AllowPrivate: true}, rcv.srv.URL, 0, "plain http"},
		{"no secrets at all", callback.Options{AllowPrivate: true, AllowHTTP: true}, rcv.srv.URL, 0, callback.SettingWebhookSecrets},
		// The origin is what has a secret: the same host on another port has none.
		{"origin without a secret", callback.Options{Secrets: secretsFor(t, otherOrigin, secret), AllowPrivate: true, AllowHTTP: true}, rcv.srv.URL, 0, "no webhook secret is configured for origin " + strings.ToLower(rcv.srv.URL)},
		{"4xx answer", callback.Options{Secrets: both, AllowPrivate: true, AllowHTTP: true}, rcv.srv.URL, 410, "410 Gone"},
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
			if st.State != record.StateSucceeded || cb == nil || cb.Delivered || cb.Attempts != 1 || !strings.Contains(cb.LastError, tc.want) {
				t.Fatalf("status %s, callback outcome = %+v, want undelivered after 1 attempt with %q", st.State, cb, tc.want)
			}
			// Refusals are permanent: the delivery job is dead at once, not retried.
			ds, err := f.client.Status(ctx, callback.DeliveryID(res.EnqueuedAt, res.JobID, 0, callback.EventSucceeded))
			if err != nil || ds.State != record.StateDead || ds.Attempt != 1 {
				t.Fatalf("delivery status = %+v, %v", ds, err)
			}
		})
	}
}

func TestQueueCallbackAndDeadEvent(t *testing.T) {
	f := newFixture(t, callback.Options{}, "done-events")
	ctx := context.Background()
	target := f.store.Layout.Name("done-events")
	createQueue(t, f.store, target)
	res, err := f.client.Enqueue(ctx, workArgs{}, &nightshift.EnqueueOptions{CallbackQueue: target})
	if err != nil {
		t.Fatal(err)
	}
	f.runJobs()
	msgs, err := testenv.QueueService(f.store).NewQueueClient(target).DequeueMessages(ctx, &azqueue.DequeueMessagesOptions{NumberOfMessages: to.Ptr[int32](32)})
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
	if dst.State != record.StateDead {
		t.Fatalf("status = %s, want dead", dst.State)
	}
	env := &envelope.Envelope{JobID: dead.JobID, Kind: "test.work", EnqueuedAt: dead.EnqueuedAt, Callback: &envelope.Callback{Queue: target}}
	for range 2 {
		if err := hook(ctx, env, dst); err != nil {
			t.Fatal(err)
		}
	}
	f.runJobs()
	msgs, err = testenv.QueueService(f.store).NewQueueClient(target).DequeueMessages(ctx, &azqueue.DequeueMessagesOptions{NumberOfMessages: to.Ptr[int32](32)})
	if err != nil {
		t.Fatal(err)
	}
	var events []string
	for _, m := range msgs.Messages {
		var p callback.Payload
		_ = json.Unmarshal([]byte(*m.MessageText), &p)
		if p.JobID == dead.JobID {
			events = append(events, p.Event)
			if p.Status.State != record.StateDead || p.Status.LastError == "" {
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
	if err := hook(ctx, &envelope.Envelope{JobID: "x", Kind: "k"}, &record.Status{JobID: "x", State: record.StateSucceeded}); err != nil {
		t.Fatal(err)
	}
	if err := hook(ctx, env, &record.Status{JobID: dead.JobID, State: record.StateRetrying}); err != nil {
		t.Fatal(err)
	}
	if d, _ := f.client.QueueDepths(ctx); d[0].Messages != 0 {
		t.Fatalf("hook enqueued %d deliveries for jobs that should not be notified", d[0].Messages)
	}
}

// createQueue creates a callback queue (the operator's job: nightshift never creates
// one) and deletes it after the test.
func createQueue(t *testing.T, store *storage.Clients, name string) {
	t.Helper()
	if _, err := testenv.QueueService(store).CreateQueue(context.Background(), name, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = testenv.QueueService(store).DeleteQueue(context.Background(), name, nil) })
}
