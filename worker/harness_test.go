package worker_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/internal/funchost"
	"github.com/nightshift-jobs/nightshift/internal/proc"
	"github.com/nightshift-jobs/nightshift/internal/testenv"
	"github.com/nightshift-jobs/nightshift/record"
	"github.com/nightshift-jobs/nightshift/storage"
	"github.com/nightshift-jobs/nightshift/worker"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const handlerPkg = "./worker/internal/workerhandler"

// fastHostJSON is the repository's host.json with test-speed polling and retry
// visibility, and the given batch budget (0, 0: the repository's).
func fastHostJSON(batchSize, newBatchThreshold int) string {
	s := worker.DefaultHostJSON
	s = strings.Replace(s, `"maxPollingInterval": "00:00:10"`, `"maxPollingInterval": "00:00:00.300"`, 1)
	s = strings.Replace(s, `"visibilityTimeout": "00:00:30"`, `"visibilityTimeout": "00:00:00.500"`, 1)
	if batchSize > 0 {
		s = strings.Replace(s, `"batchSize": 16`, fmt.Sprintf(`"batchSize": %d`, batchSize), 1)
		s = strings.Replace(s, `"newBatchThreshold": 8`, fmt.Sprintf(`"newBatchThreshold": %d`, newBatchThreshold), 1)
	}
	return s
}

// fleet is one app's storage (a fresh name prefix on the test Azurite, or cs) with the
// settings its workers and local hosts share.
type fleet struct {
	t        testing.TB
	bin      string
	settings map[string]string
	runs     string // E2E_DIR
	hostJSON string // path of the fast host.json
	clients  *storage.Clients
	client   *nightshift.Client
}

func newFleet(t testing.TB, cs string, hostJSON string) *fleet {
	t.Helper()
	if cs == "" {
		cs = testenv.ConnectionString(t)
	}
	f := &fleet{t: t, bin: testenv.BuildBinary(t, handlerPkg), runs: t.TempDir()}
	prefix := testenv.Prefix(t)
	f.settings = map[string]string{
		storage.SettingStorage:     cs,
		storage.SettingNamePrefix:  prefix,
		testenv.EnvRunsDir:         f.runs,
		"NIGHTSHIFT_SCHEDULE_TICK": "0 0 0 1 1 *", // far away unless a test sets it
		worker.SettingHostID:       "fleet-" + prefix,
	}
	f.hostJSON = filepath.Join(t.TempDir(), "host.json")
	must(t, os.WriteFile(f.hostJSON, []byte(hostJSON), 0o644))
	c, err := storage.FromEnv(f.getenv, nil)
	must(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	must(t, c.Ensure(ctx))
	f.clients = c
	f.client = nightshift.NewClient(c, nil)
	return f
}

func (f *fleet) getenv(k string) string { return f.settings[k] }

func (f *fleet) env(extra ...string) []string {
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for k, v := range f.settings {
		env = append(env, k+"="+v)
	}
	return append(env, extra...)
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// process is a worker process the test started; it is stopped by its PID.
type process struct {
	t      testing.TB
	cmd    *exec.Cmd
	logs   *testenv.LogBuffer
	stderr *testenv.LogBuffer
	addr   chan string
	health string
	exited chan struct{}
	code   int
}

// startWorker starts `workerhandler worker` with the fleet's settings, a health server on
// a free loopback port and the fast host.json, plus args; it returns once /healthz
// answers.
func (f *fleet) startWorker(args []string, extraEnv ...string) *process {
	f.t.Helper()
	argv := append([]string{"worker", "--health-addr", "127.0.0.1:0", "--host-json", f.hostJSON}, args...)
	p := f.start(argv, extraEnv...)
	select {
	case p.health = <-p.addr:
	case <-p.exited:
		f.t.Fatalf("worker exited with %d before listening:\n%s\n%s", p.code, p.stderr.String(), p.logs.Tail(4000))
	case <-time.After(60 * time.Second):
		f.t.Fatalf("worker did not listen within 60s:\n%s", p.logs.Tail(4000))
	}
	return p
}

// start runs the handler binary with argv and the fleet's environment.
func (f *fleet) start(argv []string, extraEnv ...string) *process {
	f.t.Helper()
	cmd := exec.Command(f.bin, argv...)
	cmd.Env = f.env(extraEnv...)
	proc.DieWithParent(cmd)
	p := &process{t: f.t, cmd: cmd, logs: &testenv.LogBuffer{}, stderr: &testenv.LogBuffer{}, addr: make(chan string, 1), exited: make(chan struct{})}
	out, err := cmd.StdoutPipe()
	must(f.t, err)
	cmd.Stderr = p.stderr
	must(f.t, cmd.Start())
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 1<<22)
		for sc.Scan() {
			line := sc.Text()
			_, _ = p.logs.Write([]byte(line + "\n"))
			if strings.Contains(line, "worker health endpoints listening") {
				var l struct{ Addr string }
				if json.Unmarshal([]byte(line), &l) == nil {
					p.addr <- l.Addr
				}
			}
		}
		_, _ = io.Copy(io.Discard, out)
		err := cmd.Wait()
		p.code = 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			p.code = ee.ExitCode()
		}
		close(p.exited)
	}()
	f.t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = cmd.Process.Kill()
			<-p.exited
		}
		if f.t.Failed() {
			f.t.Logf("worker %d log (tail):\n%s\nstderr:\n%s", cmd.Process.Pid, p.logs.Tail(6000), p.stderr.String())
		}
	})
	return p
}

func (p *process) pid() int { return p.cmd.Process.Pid }

// term sends SIGTERM to the process.
func (p *process) term() { must(p.t, p.cmd.Process.Signal(syscall.SIGTERM)) }

// wait waits for the process to exit (a bound against hangs) and returns its exit code.
func (p *process) wait() int {
	p.t.Helper()
	select {
	case <-p.exited:
	case <-time.After(2 * time.Minute):
		p.t.Fatalf("process %d did not exit within 2 minutes", p.pid())
	}
	return p.code
}

// get returns the status code of GET path on the health server (0 when it does not
// answer).
func (p *process) get(path string) int {
	code, _ := p.getBody(path)
	return code
}

// getBody returns the status code and body of GET path on the health server (0 when it
// does not answer).
func (p *process) getBody(path string) (int, string) {
	c := &http.Client{Timeout: 30 * time.Second}
	resp, err := c.Get("http://" + p.health + path)
	if err != nil {
		return 0, ""
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, string(b)
}

func (p *process) waitReady() {
	p.t.Helper()
	testenv.WaitFor(p.t, 60*time.Second, "/readyz 200", func() bool { return p.get("/readyz") == http.StatusOK })
}

// localHost is the local Functions host running the handler binary as its custom
// handler, on an app folder with the fleet's fast host.json and the app's functions.
type localHost struct {
	host    *funchost.Host
	cancel  context.CancelFunc
	done    chan error
	stopped chan struct{}
	logs    *testenv.LogBuffer
}

// stop cancels the host and waits for Run to return (a bound against hangs).
func (lh *localHost) stop(t testing.TB) {
	t.Helper()
	lh.cancel()
	select {
	case <-lh.stopped:
	case <-time.After(60 * time.Second):
		t.Error("local host did not stop within 60s")
	}
}

func (f *fleet) startLocalHost() *localHost {
	f.t.Helper()
	dir := f.t.TempDir()
	hj, err := os.ReadFile(f.hostJSON)
	must(f.t, err)
	must(f.t, os.WriteFile(filepath.Join(dir, "host.json"), hj, 0o644))
	must(f.t, os.Symlink(f.bin, filepath.Join(dir, "handler")))
	cmd := exec.Command(f.bin, "functions", dir)
	cmd.Env = f.env()
	if out, err := cmd.CombinedOutput(); err != nil {
		f.t.Fatalf("workerhandler functions: %v\n%s", err, out)
	}
	// The test app has no HTTP functions; a free address keeps parallel hosts apart anyway.
	lh := &localHost{logs: &testenv.LogBuffer{}, done: make(chan error, 1), stopped: make(chan struct{})}
	lh.host, err = funchost.New(dir, funchost.Options{Settings: f.settings, Getenv: func(string) string { return "" },
		Logger: slog.New(slog.NewJSONHandler(lh.logs, nil)), HTTPAddr: freeAddr(f.t), HostID: f.settings[worker.SettingHostID]})
	must(f.t, err)
	ctx, cancel := context.WithCancel(context.Background())
	lh.cancel = cancel
	go func() { lh.done <- lh.host.Run(ctx); close(lh.stopped) }()
	f.t.Cleanup(func() {
		lh.stop(f.t)
		if f.t.Failed() {
			f.t.Logf("local host log (tail):\n%s", lh.logs.Tail(6000))
		}
	})
	<-lh.host.Started()
	return lh
}

func freeAddr(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	defer l.Close()
	return l.Addr().String()
}

// enqueue enqueues a job of kind with args (JSON) and the given id ("" makes one).
func (f *fleet) enqueue(kind, args, id string) string {
	f.t.Helper()
	res, err := f.client.EnqueueRaw(context.Background(), kind, json.RawMessage(args), &nightshift.EnqueueOptions{JobID: id})
	must(f.t, err)
	return res.JobID
}

// wait waits until the job's status is terminal and returns it.
func (f *fleet) wait(id string) *record.Status {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	st, err := f.client.Wait(ctx, id, &nightshift.WaitOptions{MaxInterval: 200 * time.Millisecond})
	if err != nil {
		f.t.Fatalf("wait for job %s: %v (status %+v)", id, err, st)
	}
	return st
}

// runPIDs are the pids of the processes that ran the job, in order.
func (f *fleet) runPIDs(id string) []int {
	b, _ := os.ReadFile(filepath.Join(f.runs, id))
	var out []int
	for _, l := range strings.Fields(string(b)) {
		n, _ := strconv.Atoi(l)
		out = append(out, n)
	}
	return out
}

// logLines returns the JSON log lines of logs whose msg is msg.
func logLines(logs string, msg string) []map[string]any {
	var out []map[string]any
	for _, l := range strings.Split(logs, "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}
