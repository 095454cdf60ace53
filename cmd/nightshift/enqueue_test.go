package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azqueue/v2"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/envelope"
	"github.com/nightshift-jobs/nightshift/internal/testenv"
	"github.com/nightshift-jobs/nightshift/storage"
)

// CLI test kinds, run by an in-process handler.

type okArgs struct {
	Name string `json:"name"`
}

func (okArgs) Kind() string { return "cli.ok" }

type flakyArgs struct{}

func (flakyArgs) Kind() string { return "cli.flaky" }

// cliEnv is a fresh storage prefix in the process environment (the CLI reads settings
// with os.Getenv, like the handler), plus an in-process handler to run jobs with.
type cliEnv struct {
	t      *testing.T
	store  *storage.Clients
	client *nightshift.Client
	h      http.Handler
}

func newCLIEnv(t *testing.T) *cliEnv {
	t.Helper()
	t.Setenv(storage.SettingStorage, testenv.ConnectionString(t))
	t.Setenv(storage.SettingNamePrefix, testenv.Prefix(t))
	store, err := storage.FromEnv(os.Getenv, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Ensure(context.Background()); err != nil {
		t.Fatal(err)
	}
	reg := nightshift.NewRegistry()
	nightshift.AddWorkerFunc(reg, func(ctx context.Context, job *nightshift.Job[okArgs]) (any, error) {
		job.Logger.Info("hello", "name", job.Args.Name)
		return map[string]string{"hello": job.Args.Name}, nil
	}, nil)
	nightshift.AddWorkerFunc(reg, func(ctx context.Context, job *nightshift.Job[flakyArgs]) (any, error) {
		if job.Replay == 0 {
			return nil, nightshift.Permanentf("first life fails")
		}
		return map[string]int{"life": job.Replay}, nil
	}, nil)
	h := nightshift.NewHandler(reg, store, &nightshift.HandlerOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	return &cliEnv{t: t, store: store, client: nightshift.NewClient(store, nil), h: h}
}

// run runs the CLI with args and stdin, returning stdout, stderr and the exit code as
// main's run would compute it.
func (e *cliEnv) run(stdin string, args ...string) (string, string, int) {
	e.t.Helper()
	root := newRoot()
	var out, errb bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errb)
	root.SetIn(strings.NewReader(stdin))
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	code := exitOK
	if err != nil {
		fmt.Fprintln(&errb, "nightshift:", err)
		var ue usageError
		var ee exitError
		switch {
		case errors.As(err, &ee):
			code = ee.code
		case errors.As(err, &ue), isCobraUsage(err):
			code = exitUsage
		default:
			code = exitFailure
		}
	}
	return out.String(), errb.String(), code
}

// runJobs plays the queue trigger for the jobs queue and its poison queue until both are
// empty (docs/host-contract.md §1.5 request shape).
func (e *cliEnv) runJobs() {
	e.t.Helper()
	testenv.Drain(e.t, e.store, e.h, e.store.Layout.JobsQueue(), nightshift.FunctionRunJob, nightshift.FunctionRunDeadLetter)
}

func TestEnqueueCommand(t *testing.T) {
	e := newCLIEnv(t)
	out, _, code := e.run("", "enqueue", "cli.ok", "--args", `{"name":"Ann"}`, "--meta", "tenant=a", "--max-attempts", "3")
	if code != 0 || !strings.HasPrefix(out, "enqueued job ") || !strings.Contains(out, "(kind cli.ok) on queue "+e.store.Layout.JobsQueue()) {
		t.Fatalf("enqueue: code %d, out %q", code, out)
	}
	id := strings.Fields(out)[2]
	st, err := e.client.Status(context.Background(), id)
	if err != nil || st.Meta["tenant"] != "a" || st.MaxAttempts != 3 {
		t.Fatalf("status = %+v, %v", st, err)
	}

	// Args from standard input, JSON output, delayed.
	out, _, code = e.run(`{"name":"stdin"}`, "enqueue", "cli.ok", "--args", "-", "--run-in", "1h", "--job-id", "from-stdin", "--json")
	var res nightshift.EnqueueResult
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil || res.JobID != "from-stdin" || res.RunAt.IsZero() {
		t.Fatalf("enqueue --json: code %d, out %q", code, out)
	}
	peek, _ := testenv.QueueService(e.store).NewQueueClient(res.Queue).PeekMessages(context.Background(), nil)
	if len(peek.Messages) != 1 { // only the first job is visible
		t.Fatalf("visible messages = %d, want 1", len(peek.Messages))
	}
	// Args from a file.
	file := filepath.Join(t.TempDir(), "args.json")
	if err := os.WriteFile(file, []byte(`{"name":"file"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, _, code = e.run("", "enqueue", "cli.ok", "--args-file", file, "--json"); code != 0 {
		t.Fatalf("--args-file: %d %s", code, out)
	}
	json.Unmarshal([]byte(out), &res)
	msgs, _ := testenv.QueueService(e.store).NewQueueClient(res.Queue).PeekMessages(context.Background(), &azqueue.PeekMessagesOptions{NumberOfMessages: to.Ptr[int32](32)})
	found := false
	for _, m := range msgs.Messages {
		env, err := envelope.Decode([]byte(*m.MessageText))
		if err == nil && env.JobID == res.JobID && string(env.Args) == `{"name":"file"}` {
			found = true
		}
	}
	if !found {
		t.Fatalf("the --args-file job %s is not on the queue with its args", res.JobID)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"enqueue", "cli.ok", "--args", `{"name":`}, "not valid JSON"},
		{[]string{"enqueue", "cli.ok", "--args", `{}`, "--args-file", file}, "give the args once"},
		{[]string{"enqueue", "no spaces allowed"}, `envelope field "kind"`},
		{[]string{"enqueue", "cli.ok", "--run-in=-5m"}, "negative"},
		{[]string{"enqueue", "cli.ok", "--run-at", "tomorrow"}, "RFC 3339"},
		{[]string{"enqueue", "cli.ok", "--meta", "novalue"}, "key=value"},
		{[]string{"enqueue", "cli.ok", "--callback-url", "ftp://x"}, "callback.url"},
		{[]string{"enqueue"}, "accepts 1 arg"},
		{[]string{"enqueue", "cli.ok", "--priority", "urgent"}, "want high, normal or low"},
		{[]string{"enqueue", "cli.ok", "--priority", "high", "--queue", "other"}, "not both"},
		{bigMetaArgs(), "at most 65536 bytes"},
	} {
		_, stderr, code := e.run("", tc.args...)
		if code != exitUsage || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: code %d, stderr %q; want 2 and %q", tc.args[:min(len(tc.args), 3)], code, stderr, tc.want)
		}
	}
	// --priority picks the priority's queue.
	out, _, code = e.run("", "enqueue", "cli.ok", "--priority", "high", "--json")
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil || res.Queue != e.store.Layout.HighQueue() {
		t.Fatalf("--priority high: %d %q", code, out)
	}
	// Large args are claim-checked, not refused.
	if out, stderr, code := e.run("", "enqueue", "cli.ok", "--args", `"`+strings.Repeat("x", 70000)+`"`); code != 0 {
		t.Errorf("70 KB args: %d %q %q", code, out, stderr)
	}
	// A held dedupe key and a used id are failures (1), not usage errors.
	if _, _, code := e.run("", "enqueue", "cli.ok", "--dedupe-key", "k1"); code != 0 {
		t.Fatalf("dedupe key: %d", code)
	}
	if _, stderr, code := e.run("", "enqueue", "cli.ok", "--dedupe-key", "k1"); code != exitFailure || !strings.Contains(stderr, `dedupe key "k1" is held by job`) {
		t.Errorf("held dedupe key: code %d, %q", code, stderr)
	}
	if _, stderr, code := e.run("", "enqueue", "cli.ok", "--job-id", "from-stdin"); code != exitFailure || !strings.Contains(stderr, "already used") {
		t.Errorf("reused id: code %d, %q", code, stderr)
	}
}

// bigMetaArgs enqueues with meta within its per-entry bounds that together overflows a
// queue message.
func bigMetaArgs() []string {
	args := []string{"enqueue", "cli.ok"}
	for i := 0; i < envelope.MaxMetaEntries; i++ {
		args = append(args, "--meta", fmt.Sprintf("k%02d=%s", i, strings.Repeat("x", envelope.MaxMetaValueBytes)))
	}
	return args
}
