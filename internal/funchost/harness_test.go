package funchost

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azqueue/v2"

	"github.com/nightshift-jobs/nightshift/internal/testenv"
	"github.com/nightshift-jobs/nightshift/storage"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// testHostJSON is a fast host.json for tests; fields can be overridden per test.
type testHostJSON struct {
	Encoding          string
	MaxDequeueCount   int
	VisibilityTimeout string
	FunctionTimeout   string
	BatchSize         int
	NewBatchThreshold int
	Forward           bool
	Args              []string
}

func (c testHostJSON) render() string {
	if c.Encoding == "" {
		c.Encoding = "none"
	}
	if c.MaxDequeueCount == 0 {
		c.MaxDequeueCount = 5
	}
	if c.VisibilityTimeout == "" {
		c.VisibilityTimeout = "00:00:00"
	}
	if c.FunctionTimeout == "" {
		c.FunctionTimeout = "00:00:30"
	}
	if c.BatchSize == 0 {
		c.BatchSize = 8
	}
	if c.NewBatchThreshold == 0 {
		c.NewBatchThreshold = 4
	}
	args, _ := json.Marshal(c.Args)
	if c.Args == nil {
		args = []byte("[]")
	}
	return fmt.Sprintf(`{
  "version": "2.0",
  "customHandler": {"description": {"defaultExecutablePath": "handler", "arguments": %s}, "enableForwardingHttpRequest": %v},
  "functionTimeout": %q,
  "extensions": {"queues": {"messageEncoding": %q, "batchSize": %d, "newBatchThreshold": %d,
    "maxPollingInterval": "00:00:00.300", "visibilityTimeout": %q, "maxDequeueCount": %d}}
}`, args, c.Forward, c.FunctionTimeout, c.Encoding, c.BatchSize, c.NewBatchThreshold, c.VisibilityTimeout, c.MaxDequeueCount)
}

// app is a temporary app folder with the test handler and a fresh storage prefix.
type app struct {
	t        *testing.T
	dir      string
	records  string // TESTHANDLER_DIR
	prefix   string
	settings map[string]string
	clients  *storage.Clients
	logs     *logBuffer
}

func newApp(t *testing.T, hostJSON string, functions map[string]string) *app {
	t.Helper()
	cs := testenv.ConnectionString(t)
	bin := testenv.BuildBinary(t, "./internal/funchost/internal/testhandler")
	a := &app{t: t, dir: t.TempDir(), records: t.TempDir(), prefix: testenv.Prefix(t), logs: &logBuffer{}}
	a.settings = map[string]string{
		storage.SettingStorage:    cs,
		storage.SettingNamePrefix: a.prefix,
		"TESTHANDLER_DIR":         a.records,
	}
	must(t, os.WriteFile(filepath.Join(a.dir, "host.json"), []byte(hostJSON), 0o644))
	must(t, os.Symlink(bin, filepath.Join(a.dir, "handler")))
	for name, fj := range functions {
		must(t, os.MkdirAll(filepath.Join(a.dir, name), 0o755))
		must(t, os.WriteFile(filepath.Join(a.dir, name, "function.json"), []byte(a.expand(fj)), 0o644))
	}
	c, err := storage.FromEnv(func(k string) string { return a.settings[k] }, nil)
	must(t, err)
	a.clients = c
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("host log:\n%s", a.logs.String())
		}
	})
	return a
}

// expand replaces {{p}} with the test's name prefix.
func (a *app) expand(s string) string { return strings.ReplaceAll(s, "{{p}}", a.prefix) }

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// run starts a host on the app and stops it at cleanup. The returned channel yields Run's
// result.
func (a *app) run(opts Options) (*Host, context.CancelFunc, <-chan error) {
	a.t.Helper()
	if opts.Settings == nil {
		opts.Settings = a.settings
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(a.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if opts.Getenv == nil {
		opts.Getenv = func(string) string { return "" }
	}
	if opts.DrainTimeout == 0 {
		opts.DrainTimeout = 5 * time.Second
	}
	h, err := New(a.dir, opts)
	must(a.t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	stopped := make(chan struct{})
	go func() { err := h.Run(ctx); done <- err; close(stopped) }()
	a.t.Cleanup(func() {
		cancel()
		select {
		case <-stopped:
		case <-time.After(30 * time.Second):
			a.t.Error("host did not stop within 30s")
		}
	})
	return h, cancel, done
}

func (a *app) queue(name string) *azqueue.QueueClient {
	return testenv.QueueService(a.clients).NewQueueClient(a.expand(name))
}

func (a *app) createQueue(name string) *azqueue.QueueClient {
	a.t.Helper()
	q := a.queue(name)
	if _, err := q.Create(context.Background(), nil); err != nil {
		a.t.Fatalf("create queue %s: %v", name, err)
	}
	a.t.Cleanup(func() { _, _ = q.Delete(context.Background(), nil) })
	return q
}

func (a *app) enqueue(q *azqueue.QueueClient, text string) string {
	a.t.Helper()
	resp, err := q.EnqueueMessage(context.Background(), text, nil)
	must(a.t, err)
	return *resp.Messages[0].MessageID
}

// peekAll returns the texts of the visible messages (up to 32).
func peekAll(t testing.TB, q *azqueue.QueueClient) []string {
	t.Helper()
	resp, err := q.PeekMessages(context.Background(), &azqueue.PeekMessagesOptions{NumberOfMessages: ptr(int32(32))})
	if err != nil {
		if storage.IsNotFound(err) {
			return nil
		}
		t.Fatal(err)
	}
	var out []string
	for _, m := range resp.Messages {
		out = append(out, *m.MessageText)
	}
	return out
}

func ptr[T any](v T) *T { return &v }

// approxCount returns the queue's approximate message count (visible and invisible).
func approxCount(t testing.TB, q *azqueue.QueueClient) int {
	t.Helper()
	p, err := q.GetProperties(context.Background(), nil)
	if storage.IsNotFound(err) {
		return -1
	}
	must(t, err)
	return int(*p.ApproximateMessagesCount)
}

// record is one request seen by the test handler.
type record struct {
	Function   string              `json:"function"`
	Tag        string              `json:"tag"`
	PID        int                 `json:"pid"`
	Headers    map[string][]string `json:"headers"`
	Body       json.RawMessage     `json:"body"`
	Path       string              `json:"path"`
	Concurrent int64               `json:"concurrent"`
	Env        map[string]string   `json:"env"`
	At         time.Time           `json:"at"`
}

func (a *app) records_(key string) []record {
	a.t.Helper()
	f, err := os.Open(filepath.Join(a.records, key+".log"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	must(a.t, err)
	defer f.Close()
	var out []record
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<22)
	for sc.Scan() {
		var r record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			continue // a line being written
		}
		out = append(out, r)
	}
	return out
}

// logBuffer collects the host's log output.
type logBuffer = testenv.LogBuffer

// queueFn is a function.json for a queue trigger on queue q.
func queueFn(q string, extra ...string) string {
	b := `{"name":"msg","type":"queueTrigger","direction":"in","queueName":"` + q + `","connection":"AzureWebJobsStorage"}`
	for _, e := range extra {
		b += "," + e
	}
	return `{"bindings":[` + b + `]}`
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
