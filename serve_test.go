package nightshift

import (
	"context"
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

	"github.com/nightshift-jobs/nightshift/internal/proc"
	"github.com/nightshift-jobs/nightshift/internal/testenv"
	"github.com/nightshift-jobs/nightshift/record"
	"github.com/nightshift-jobs/nightshift/storage"
)

type slowArgs struct{ MS int }

func (slowArgs) Kind() string { return "test.slow" }

// On SIGTERM (ctx done) Serve stops taking invocations but lets in-flight jobs finish and
// record their end; with a drain deadline shorter than the job, the job sees its context
// cancelled and is recorded as interrupted and retried.
func TestServeDrainsInFlightJobs(t *testing.T) {
	for _, c := range []struct {
		name  string
		drain time.Duration
		state record.State
	}{
		{"finishes within the drain deadline", 10 * time.Second, record.StateSucceeded},
		{"interrupted after the drain deadline", 200 * time.Millisecond, record.StateRetrying},
	} {
		t.Run(c.name, func(t *testing.T) {
			l, _ := net.Listen("tcp", "127.0.0.1:0")
			port := l.Addr().(*net.TCPAddr).Port
			l.Close()
			store := testenv.Clients(t)
			started := make(chan struct{})
			reg := NewRegistry()
			AddWorkerFunc(reg, func(ctx context.Context, j *Job[slowArgs]) (any, error) {
				close(started)
				select {
				case <-time.After(time.Duration(j.Args.MS) * time.Millisecond):
					return "done", nil
				case <-ctx.Done():
					return nil, ctx.Err()
				}
			}, nil)
			ctx, cancel := context.WithCancel(context.Background())
			served := make(chan error, 1)
			go func() {
				served <- Serve(ctx, reg, &ServeOptions{
					Getenv:       func(k string) string { return map[string]string{SettingPort: fmt.Sprint(port)}[k] },
					Store:        store,
					Logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
					DrainTimeout: c.drain,
				})
			}()
			url := fmt.Sprintf("http://127.0.0.1:%d", port)
			for i := 0; ; i++ {
				if resp, err := http.Get(url + "/"); err == nil {
					resp.Body.Close()
					break
				} else if i > 200 {
					t.Fatal(err)
				}
				time.Sleep(25 * time.Millisecond)
			}
			body := hostRequest(t, FunctionRunJob, []byte(`{"job_id":"drain-1","kind":"test.slow","args":{"MS":1500}}`), hostMeta{})
			answered := make(chan int, 1)
			go func() {
				resp, err := http.Post(url+"/"+FunctionRunJob, "application/json", strings.NewReader(string(body)))
				if err != nil {
					answered <- 0
					return
				}
				resp.Body.Close()
				answered <- resp.StatusCode
			}()
			<-started
			cancel() // SIGTERM
			if code := <-answered; code != 200 {
				t.Fatalf("in-flight invocation answered %d", code)
			}
			if err := <-served; err != nil {
				t.Fatal(err)
			}
			st, _, err := store.GetStatus(context.Background(), "drain-1")
			if err != nil || st.State != c.state {
				t.Fatalf("%+v %v", st, err)
			}
			if c.state == record.StateRetrying && st.Errors[0].Class != "cancelled" {
				t.Fatalf("errors %+v", st.Errors)
			}
		})
	}
}

// A handler started by the local host (proc.EnvParentPID set) shuts down by itself once
// its parent is gone: the watchdog where no parent-death signal exists. A shell starts
// the test binary as such a handler in the background and exits, so the handler is
// reparented; it must then stop serving and exit on its own.
func TestServeStopsWhenItsLocalHostIsGone(t *testing.T) {
	if os.Getenv("NIGHTSHIFT_TEST_SERVE_CHILD") == "1" {
		serveAsOrphanedChild()
		return
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cmd := exec.Command("sh", "-c", `"$0" -test.run='^TestServeStopsWhenItsLocalHostIsGone$' >"$1" 2>&1 & echo $!; sleep 1`, exe, filepath.Join(t.TempDir(), "child.log"))
	cmd.Env = append(os.Environ(), "NIGHTSHIFT_TEST_SERVE_CHILD=1", SettingPort+"="+fmt.Sprint(port), proc.EnvParentPID+"=1")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("shell: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatalf("child pid %q: %v", out, err)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	testenv.WaitFor(t, 30*time.Second, "the orphaned handler to exit", func() bool {
		return exited(pid)
	})
}

// exited says whether process pid has ended: gone, or a zombie its new parent has not
// reaped yet (where /proc shows it).
func exited(pid int) bool {
	if syscall.Kill(pid, 0) == syscall.ESRCH {
		return true
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	_, rest, ok := strings.Cut(string(stat), ") ")
	return ok && strings.HasPrefix(rest, "Z")
}

func memoryClients() *storage.Clients {
	c, err := storage.NewMemory("", nil)
	if err != nil {
		panic(err)
	}
	return c
}

// serveAsOrphanedChild serves until the watchdog stops it, then exits 0 (the parent test
// only sees whether the process is gone).
func serveAsOrphanedChild() {
	err := Serve(context.Background(), NewRegistry(), &ServeOptions{
		Getenv: os.Getenv,
		Store:  memoryClients(),
		Logger: slog.New(slog.NewTextHandler(os.Stderr, nil)),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "serve:", err)
		os.Exit(1)
	}
	os.Exit(0)
}
