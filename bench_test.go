package nightshift

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/nightshift-jobs/nightshift/internal/testenv"
	"github.com/nightshift-jobs/nightshift/record"
	"github.com/nightshift-jobs/nightshift/storage"
)

// memStore keeps records in memory: for measuring the handler's own cost without
// storage. Storage behaviour itself is only ever tested against Azurite.
type memStore struct {
	mu       sync.Mutex
	statuses map[string]*record.Status
	n        int
}

func (m *memStore) GetStatus(ctx context.Context, id string) (*record.Status, storage.ETag, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	st, ok := m.statuses[id]
	if !ok {
		return nil, "", errNoStatus
	}
	c := *st
	return &c, storage.ETag(fmt.Sprint(m.n)), nil
}

func (m *memStore) PutStatus(ctx context.Context, st *record.Status, etag storage.ETag) (storage.ETag, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.n++
	c := *st
	m.statuses[st.JobID] = &c
	return storage.ETag(fmt.Sprint(m.n)), nil
}

func (m *memStore) UpdateStatus(ctx context.Context, id string, change func(*record.Status) *record.Status) (*record.Status, bool, error) {
	cur, _, err := m.GetStatus(ctx, id)
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return nil, false, err
	}
	next := change(cur)
	if next == nil {
		return cur, false, nil
	}
	_, err = m.PutStatus(ctx, next, "")
	return next, err == nil, err
}

func (m *memStore) PutResult(context.Context, string, string, []byte) (bool, error) { return true, nil }
func (m *memStore) Enqueue(context.Context, string, []byte, time.Duration, time.Duration) (string, error) {
	return "id", nil
}
func (m *memStore) GetDeadLetter(context.Context, string) (*record.DeadLetter, storage.ETag, error) {
	return nil, "", storage.ErrNotFound
}
func (m *memStore) PutDeadLetter(context.Context, *record.DeadLetter, storage.ETag) (storage.ETag, error) {
	return "1", nil
}

// errNoStatus is memStore's answer for a job with no status (one error for all: the
// benchmark measures the handler, not its fake store).
var errNoStatus = fmt.Errorf("status: %w", storage.ErrNotFound)

type noopArgs struct{}

func (noopArgs) Kind() string { return "bench.noop" }

func benchHandler(b *testing.B, store recordStore) *Handler {
	reg := NewRegistry()
	AddWorkerFunc(reg, func(ctx context.Context, j *Job[noopArgs]) (any, error) { return nil, nil }, nil)
	h := NewHandler(reg, &storage.Clients{}, &HandlerOptions{Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))})
	h.exec.store = store
	return h
}

// runInvocations serves one RunJob invocation per iteration. The host's side is kept out
// of the measurement as far as it can be: the request body is one host-shaped template
// (hostRequest) with a fresh job id put in, and the response goes to a reused writer.
func runInvocations(b *testing.B, h http.Handler) {
	const placeholder = "b-0000000000000000000000000000"
	tmpl := hostRequest(b, FunctionRunJob, []byte(`{"job_id":"`+placeholder+`","kind":"bench.noop"}`), hostMeta{ID: "m"})
	if bytes.Count(tmpl, []byte(placeholder)) != 2 {
		b.Fatalf("the job id is not in Data and Metadata once each: %s", tmpl)
	}
	run := fmt.Sprintf("%x", time.Now().UnixNano())
	w := &benchWriter{header: http.Header{}}
	target := &url.URL{Path: "/" + FunctionRunJob}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		id := fmt.Sprintf("b-%s-%0*d", run, len(placeholder)-3-len(run), i)
		body := bytes.ReplaceAll(tmpl, []byte(placeholder), []byte(id))
		req := &http.Request{Method: http.MethodPost, URL: target, Body: io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body))}
		w.reset()
		h.ServeHTTP(w, req)
		if w.code != 200 || !bytes.Contains(w.body.Bytes(), []byte("succeeded")) {
			b.Fatalf("%d %s", w.code, w.body.String())
		}
	}
}

// benchWriter is a ResponseWriter reused from one invocation to the next.
type benchWriter struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (w *benchWriter) reset() {
	clear(w.header)
	w.code = 0
	w.body.Reset()
}

func (w *benchWriter) Header() http.Header { return w.header }

func (w *benchWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
}

func (w *benchWriter) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return w.body.Write(p)
}

// BenchmarkInvocation: one RunJob invocation in-process — decode the host request,
// dispatch a no-op job, encode the response — with records kept in memory, so this is
// the handler's own cost.
func BenchmarkInvocation(b *testing.B) {
	runInvocations(b, benchHandler(b, &memStore{statuses: map[string]*record.Status{}}))
}

// BenchmarkInvocationAzurite is the same against Azurite; BenchmarkStorageBaseline is the
// raw SDK calls one successful job needs (status read + status write) on the same Azurite.
// Their ratio is the handler's overhead over the storage it cannot avoid.
func BenchmarkInvocationAzurite(b *testing.B) {
	c := testenv.Clients(b)
	runInvocations(b, benchHandler(b, c))
}

func BenchmarkStorageBaseline(b *testing.B) {
	c := testenv.Clients(b)
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		id := fmt.Sprintf("base-%d-%d", time.Now().UnixNano(), i)
		if _, _, err := c.GetStatus(ctx, id); !errors.Is(err, storage.ErrNotFound) {
			b.Fatal(err)
		}
		if _, err := c.PutStatus(ctx, &record.Status{JobID: id, State: record.StateSucceeded}, ""); err != nil {
			b.Fatal(err)
		}
	}
}

// countingTransport counts storage requests by method and service.
type countingTransport struct {
	next  policy.Transporter
	mu    sync.Mutex
	calls []string
}

func (c *countingTransport) Do(req *http.Request) (*http.Response, error) {
	c.mu.Lock()
	c.calls = append(c.calls, req.Method+" "+req.URL.Path)
	c.mu.Unlock()
	return c.next.Do(req)
}

// One successful quick job costs the handler exactly one storage call: the one
// conditional write of its final status with the result inline, create-only for a raw
// producer's message and over the queued record (its status_etag) for the Go client's. Its
// first delivery reads no status (docs/semantics.md, "The write path"). (The enqueue, the
// host's receive — shared by up to 32 messages — and the host's delete are the rest.)
func TestStorageCallsPerSuccessfulJob(t *testing.T) {
	ct := &countingTransport{next: http.DefaultClient}
	c, err := storage.FromEnv(testenv.Env(t), &storage.Options{Transport: ct})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Ensure(context.Background()); err != nil {
		t.Fatal(err)
	}
	reg := NewRegistry()
	AddWorkerFunc(reg, func(ctx context.Context, j *Job[addArgs]) (any, error) { return j.Args.A + j.Args.B, nil }, nil)
	h := NewHandler(reg, c, &HandlerOptions{Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))})
	i2blob := []string{cancelsBlob, pausedBlob}
	raw := func(id string) []byte {
		return []byte(`{"job_id":"` + id + `","kind":"test.add","args":{"A":1,"B":2}}`)
	}
	runOne := func(msg []byte) []string {
		ct.mu.Lock()
		ct.calls = nil
		ct.mu.Unlock()
		body := hostRequest(t, FunctionRunJob, msg, hostMeta{})
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/"+FunctionRunJob, strings.NewReader(string(body))))
		if rec.Code != 200 {
			t.Fatal(rec.Body.String())
		}
		ct.mu.Lock()
		defer ct.mu.Unlock()
		return slices.Clone(ct.calls)
	}
	// The first job of a process also reads the cancel journal and the pauses record
	// (each once per CancelJournalCheck, PauseCheck).
	unique := func(call string, i int) bool {
		return strings.HasPrefix(call, "GET ") && strings.HasSuffix(call, "/"+path.Join(c.Layout.UniqueContainer(), i2blob[i]))
	}
	if calls := runOne(raw("calls-0")); len(calls) != 3 || !unique(calls[0], 0) || !unique(calls[1], 1) || !strings.HasPrefix(calls[2], "PUT ") {
		t.Fatalf("storage calls of the first job: %q", calls)
	}
	if calls := runOne(raw("calls-1")); len(calls) != 1 || !strings.HasPrefix(calls[0], "PUT ") {
		t.Fatalf("storage calls (raw producer): %q", calls)
	}
	// A job the Go client enqueued: its message carries the queued record's ETag.
	cl := NewClient(c, nil)
	res, err := cl.EnqueueRaw(context.Background(), "test.add", json.RawMessage(`{"A":1,"B":2}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := c.Store().Receive(context.Background(), res.Queue, 32, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	var body []byte
	for _, m := range msgs {
		if strings.Contains(m.Text, res.JobID) {
			body = []byte(m.Text)
		}
	}
	if body == nil {
		t.Fatal("the client's message is not on its queue")
	}
	if calls := runOne(body); len(calls) != 1 || !strings.HasPrefix(calls[0], "PUT ") {
		t.Fatalf("storage calls (Go client): %q", calls)
	}
	if st, err := cl.Status(context.Background(), res.JobID); err != nil || st.State != record.StateSucceeded {
		t.Fatalf("status %+v, %v", st, err)
	}
}
