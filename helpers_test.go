package nightshift

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azqueue/v2"
	"github.com/google/uuid"
	"github.com/nightshift-jobs/nightshift/hostproto"
	"github.com/nightshift-jobs/nightshift/internal/testenv"
	"github.com/nightshift-jobs/nightshift/record"
	"github.com/nightshift-jobs/nightshift/storage"
)

// Test kinds.

type addArgs struct{ A, B int }

func (addArgs) Kind() string { return "test.add" }

type failArgs struct{ Msg string }

func (failArgs) Kind() string { return "test.fail" }

type permArgs struct{}

func (permArgs) Kind() string { return "test.permanent" }

type panicArgs struct{}

func (panicArgs) Kind() string { return "test.panic" }

type countArgs struct{}

func (countArgs) Kind() string { return "test.count" }

type bigArgs struct{ Size int }

func (bigArgs) Kind() string { return "test.big" }

type testEnv struct {
	t     *testing.T
	store *storage.Clients
	h     *Handler
	srv   *httptest.Server
	runs  atomic.Int64 // test.count runs
}

func newTestEnv(t *testing.T) *testEnv {
	t.Helper()
	te := &testEnv{t: t, store: testenv.Clients(t)}
	reg := NewRegistry()
	fast := &WorkerOptions{MaxAttempts: 3, Backoff: ConstantBackoff(time.Second)}
	AddWorkerFunc(reg, func(ctx context.Context, j *Job[addArgs]) (any, error) {
		j.Logger.Info("adding", "a", j.Args.A, "b", j.Args.B)
		return map[string]int{"sum": j.Args.A + j.Args.B}, nil
	}, nil)
	AddWorkerFunc(reg, func(ctx context.Context, j *Job[failArgs]) (any, error) {
		j.Logger.Warn("about to fail", "attempt", j.Attempt)
		return nil, fmt.Errorf("failing on purpose: %s", j.Args.Msg)
	}, fast)
	AddWorkerFunc(reg, func(ctx context.Context, j *Job[permArgs]) (any, error) {
		return nil, Permanentf("bad input, never retry")
	}, fast)
	AddWorkerFunc(reg, func(ctx context.Context, j *Job[panicArgs]) (any, error) {
		var m map[string]int
		//lint:ignore SA5000 the worker panics on purpose
		m["boom"]++ // nil map write panics
		return nil, nil
	}, fast)
	AddWorkerFunc(reg, func(ctx context.Context, j *Job[countArgs]) (any, error) {
		te.runs.Add(1)
		return nil, nil
	}, nil)
	AddWorkerFunc(reg, func(ctx context.Context, j *Job[bigArgs]) (any, error) {
		return Bytes{ContentType: "text/plain", Data: bytes.Repeat([]byte("x"), j.Args.Size)}, nil
	}, nil)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	te.h = NewHandler(reg, te.store, &HandlerOptions{Logger: log})
	te.srv = httptest.NewServer(te.h)
	t.Cleanup(te.srv.Close)
	return te
}

// hostMeta is the queue metadata of a delivery as the host sends it.
type hostMeta struct {
	ID           string
	DequeueCount int
	Inserted     time.Time
}

// hostRequest builds an invocation body exactly as the Functions host does for a queue
// trigger (docs/host-contract.md §1.4–1.5): the message text double-encoded, metadata
// strings double-encoded, numbers as strings, dates without fractions, sys as an object,
// and the top-level properties of a JSON-object message copied into Metadata (a property
// "id" overwriting Id).
func hostRequest(t testing.TB, function string, msg []byte, m hostMeta) []byte {
	t.Helper()
	enc := func(v any) json.RawMessage {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	twice := func(s string) json.RawMessage { return enc(string(enc(s))) }
	if m.ID == "" {
		m.ID = uuid.NewString()
	}
	if m.DequeueCount == 0 {
		m.DequeueCount = 1
	}
	if m.Inserted.IsZero() {
		m.Inserted = time.Now()
	}
	iso := func(t time.Time) json.RawMessage { return enc(t.UTC().Format("2006-01-02T15:04:05+00:00")) }
	meta := map[string]json.RawMessage{}
	set := func(k string, v json.RawMessage) {
		for old := range meta {
			if strings.EqualFold(old, k) {
				meta[old] = v
				return
			}
		}
		meta[k] = v
	}
	set("DequeueCount", enc(fmt.Sprint(m.DequeueCount)))
	set("Id", twice(m.ID))
	set("PopReceipt", twice("AgAAAAMAAAAAAAAA"))
	set("InsertionTime", iso(m.Inserted))
	set("ExpirationTime", iso(m.Inserted.Add(7*24*time.Hour)))
	set("NextVisibleTime", iso(m.Inserted.Add(10*time.Minute)))
	set("sys", enc(map[string]string{"MethodName": function, "UtcNow": time.Now().UTC().Format("2006-01-02T15:04:05.0000000Z"), "RandGuid": uuid.NewString()}))
	trimmed := strings.TrimSpace(string(msg))
	var props map[string]json.RawMessage
	if strings.HasPrefix(trimmed, "{") && json.Unmarshal([]byte(trimmed), &props) == nil {
		for k, v := range props {
			switch {
			case strings.HasPrefix(string(v), "["), string(v) == "null":
			case strings.HasPrefix(string(v), "{"):
				set(k, v)
			case strings.HasPrefix(string(v), `"`):
				var s string
				_ = json.Unmarshal(v, &s)
				set(k, twice(s))
			default:
				s := string(v)
				if s == "true" || s == "false" {
					s = strings.ToUpper(s[:1]) + s[1:]
				}
				set(k, twice(s))
			}
		}
	}
	return enc(map[string]any{"Data": map[string]json.RawMessage{"message": twice(string(msg))}, "Metadata": meta})
}

// invoke POSTs a host-shaped request with the host's headers and decodes the response.
func (te *testEnv) invoke(function string, body []byte) (int, hostproto.InvokeResponse, string) {
	te.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, te.srv.URL+"/"+function, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set(hostproto.HeaderInvocationID, uuid.NewString())
	req.Header.Set(hostproto.HeaderHostVersion, "4.1040.0.0")
	req.Header.Set("User-Agent", "Azure-Functions-Host/4.1040.0.0")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		te.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out hostproto.InvokeResponse
	if resp.StatusCode == 200 {
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			te.t.Fatalf("content type %q", ct)
		}
		if err := json.Unmarshal(raw, &out); err != nil {
			te.t.Fatalf("response %q: %v", raw, err)
		}
	}
	return resp.StatusCode, out, string(raw)
}

// enqueue puts raw text on a queue.
func (te *testEnv) enqueue(queue string, text string) {
	te.t.Helper()
	if _, err := te.store.Enqueue(context.Background(), queue, []byte(text), 0, 0); err != nil {
		te.t.Fatal(err)
	}
}

// deliver receives one message from queue, invokes function with it as the host would and,
// on a 2xx answer, deletes it (§2.3). It waits up to wait for a message to be visible.
func (te *testEnv) deliver(function, queue string, wait time.Duration) (int, hostproto.InvokeResponse, string) {
	te.t.Helper()
	m := te.receive(queue, wait)
	body := hostRequest(te.t, function, []byte(*m.MessageText), hostMeta{ID: *m.MessageID, DequeueCount: int(*m.DequeueCount), Inserted: *m.InsertionTime})
	code, out, raw := te.invoke(function, body)
	if code/100 == 2 {
		if _, err := testenv.QueueService(te.store).NewQueueClient(queue).DeleteMessage(context.Background(), *m.MessageID, *m.PopReceipt, nil); err != nil {
			te.t.Fatal(err)
		}
	}
	return code, out, raw
}

func (te *testEnv) receive(queue string, wait time.Duration) *azqueue.DequeuedMessage {
	te.t.Helper()
	deadline := time.Now().Add(wait)
	for {
		resp, err := testenv.QueueService(te.store).NewQueueClient(queue).DequeueMessage(context.Background(), &azqueue.DequeueMessageOptions{VisibilityTimeout: to.Ptr(int32(600))})
		if err != nil {
			te.t.Fatal(err)
		}
		if len(resp.Messages) > 0 {
			return resp.Messages[0]
		}
		if time.Now().After(deadline) {
			te.t.Fatalf("no message on %s within %s", queue, wait)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (te *testEnv) queueLen(queue string) int {
	te.t.Helper()
	p, err := testenv.QueueService(te.store).NewQueueClient(queue).GetProperties(context.Background(), nil)
	if err != nil {
		te.t.Fatal(err)
	}
	return int(*p.ApproximateMessagesCount)
}

func (te *testEnv) status(id string) *record.Status {
	te.t.Helper()
	st, _, err := te.store.GetStatus(context.Background(), id)
	if err != nil {
		te.t.Fatal(err)
	}
	return st
}

func (te *testEnv) jobs() string   { return te.store.Layout.JobsQueue() }
func (te *testEnv) poison() string { return te.store.Layout.PoisonQueue(te.jobs()) }

func (te *testEnv) get(path string) (int, hostproto.InvokeResponse, string) {
	te.t.Helper()
	resp, err := http.Get(te.srv.URL + path)
	if err != nil {
		te.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, hostproto.InvokeResponse{}, string(raw)
}
