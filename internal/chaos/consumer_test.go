//go:build linux

package chaos

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nightshift-jobs/nightshift/internal/appfolder"
	"github.com/nightshift-jobs/nightshift/internal/funchost"
	"github.com/nightshift-jobs/nightshift/internal/proc"
	"github.com/nightshift-jobs/nightshift/internal/testenv"
)

// consumer is the side of the storm that takes jobs off the queues and runs them. The
// storm only needs these operations, so another consumer — a fleet of `handler worker`
// processes — can replace the local host without touching the storm or its checks.
type consumer interface {
	// name says what runs the jobs, for the summary.
	name() string
	// runner names what killRunner kills ("handler", "worker") and whole what crash
	// kills ("host"), for the summary.
	runner() string
	whole() string
	// start starts the consumer's processes (again, after crash).
	start() error
	// killRunner SIGKILLs one process that runs jobs (the host's handler; a worker), which
	// the consumer replaces itself (the host restarts its handler). It returns that
	// process's pid, or 0 when none runs at the moment (one is starting).
	killRunner() int
	// crash SIGKILLs the whole consumer, as a lost machine; start brings it back.
	crash() error
	// stop ends the consumer gracefully (SIGTERM) and waits for it; the test's cleanup
	// calls it too, so it does nothing when nothing runs.
	stop() error
	// stats are the consumer's own counts, for the summary (e.g. host restarts).
	stats() string
	// logTail is the end of the consumer's log, for failure reports.
	logTail() string
}

// The host child is this test binary run again with hostChildEnv set to an app folder:
// the local host (funchost) in a process of its own, so it can be SIGKILLed.
const (
	hostChildEnv = "NIGHTSHIFT_CHAOS_HOST_CHILD"
	// hostChildLog names the file the host child logs to.
	hostChildLog = hostChildEnv + "_LOG"
)

// Host settings of the chaos host child.
const (
	// childReceiveVisibility replaces the host's 10 min receive visibility: the messages a
	// SIGKILLed host had received reappear after it, as on Azure, only sooner.
	childReceiveVisibility = 10 * time.Second
	// childRestartDelay is how long the child waits before it starts a new host after
	// funchost.ErrHandlerRestarts (the host's rule: three handler exits within 30 min).
	// `nightshift dev` (superviseHost) does the same, as the platform does on Azure, but
	// doubles its wait up to a minute; a fixed second keeps the storm's pace the killer's.
	childRestartDelay = time.Second
)

// TestChaosHostChild is not a test: run with hostChildEnv set, it is the local host
// process of TestCrashStorm. It runs hosts one after another until SIGTERM, starting a new
// one whenever a host shuts itself down after three handler failures, and prints
// "host-start" and "host-restart" lines on stdout.
func TestChaosHostChild(t *testing.T) {
	appDir := os.Getenv(hostChildEnv)
	if appDir == "" {
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	logf, err := os.OpenFile(os.Getenv(hostChildLog), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	log := slog.New(slog.NewTextHandler(logf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	for {
		h, err := funchost.New(appDir, funchost.Options{
			Logger: log, Development: true, ReceiveVisibility: childReceiveVisibility, DrainTimeout: 10 * time.Second,
		})
		if err != nil {
			t.Fatal(err)
		}
		fmt.Println("host-start")
		err = h.Run(ctx)
		if ctx.Err() != nil {
			return
		}
		if !errors.Is(err, funchost.ErrHandlerRestarts) {
			fmt.Println("host-failed:", err)
			t.Fatal(err)
		}
		fmt.Println("host-restart")
		log.Warn("chaos host child: the host shut down after three handler failures; starting a new one", "in", childRestartDelay)
		select {
		case <-ctx.Done():
			return
		case <-time.After(childRestartDelay):
		}
	}
}

// hostConsumer runs the local host (TestChaosHostChild) on an app folder assembled from
// the repository's host.json and job functions with the chaos handler.
type hostConsumer struct {
	appDir string
	env    []string
	log    string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}

	starts, restarts, failed atomic.Int64
}

// newHostConsumer assembles the app folder: the repository's host.json with test-speed
// polling and a 1 s release of failed messages, and only the queue-triggered job and
// dead-letter functions (the chaos handler serves nothing else). settings are the app
// settings the host and the handler get.
func newHostConsumer(t *testing.T, settings map[string]string) *hostConsumer {
	t.Helper()
	bin := testenv.BuildBinary(t, "./internal/chaos/chaoshandler")
	dir := filepath.Join(t.TempDir(), "app")
	if err := appfolder.Assemble(context.Background(), dir, appfolder.Options{
		RepoRoot: testenv.RepoRoot(), HandlerBinary: bin, NamePrefix: settings["NIGHTSHIFT_NAME_PREFIX"],
	}); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() && !strings.HasPrefix(e.Name(), "RunJob") && !strings.HasPrefix(e.Name(), "RunDeadLetter") {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				t.Fatal(err)
			}
		}
	}
	hj, err := os.ReadFile(filepath.Join(dir, "host.json"))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{"maxPollingInterval": "00:00:00.500", "visibilityTimeout": "00:00:01"} {
		hj, err = setJSONString(hj, k, v)
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "host.json"), hj, 0o644); err != nil {
		t.Fatal(err)
	}
	c := &hostConsumer{appDir: dir, log: filepath.Join(t.TempDir(), "host.log")}
	c.env = append(os.Environ(), hostChildEnv+"="+dir, hostChildLog+"="+c.log)
	for k, v := range settings {
		c.env = append(c.env, k+"="+v)
	}
	t.Cleanup(func() {
		if err := c.stop(); err != nil {
			t.Error(err)
		}
	})
	return c
}

// setJSONString replaces the value of the one `"key": "…"` in a JSON file's text.
func setJSONString(b []byte, key, value string) ([]byte, error) {
	s := string(b)
	i := strings.Index(s, `"`+key+`"`)
	if i < 0 {
		return nil, fmt.Errorf("host.json has no %q", key)
	}
	colon := strings.Index(s[i:], ":") + i
	open := strings.Index(s[colon:], `"`) + colon
	end := strings.Index(s[open+1:], `"`) + open + 1
	return []byte(s[:open+1] + value + s[end:]), nil
}

func (c *hostConsumer) name() string { return "local host (funchost child process)" }

func (c *hostConsumer) runner() string { return "handler" }

func (c *hostConsumer) whole() string { return "host" }

func (c *hostConsumer) start() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd != nil {
		return errors.New("the host child is already running")
	}
	cmd := exec.Command(os.Args[0], "-test.run", "^TestChaosHostChild$", "-test.count=1")
	cmd.Env = c.env
	proc.DieWithParent(cmd) // a dying test leaves no host (and so no handler) behind
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start the host child: %w", err)
	}
	exited := make(chan struct{})
	go func() {
		c.relay(out)
		_ = cmd.Wait()
		close(exited)
	}()
	c.cmd, c.exited = cmd, exited
	return nil
}

// relay counts the host child's "host-…" lines and copies the rest to its log.
func (c *hostConsumer) relay(r io.Reader) {
	f, _ := os.OpenFile(c.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	defer f.Close()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		switch line := sc.Text(); {
		case line == "host-start":
			c.starts.Add(1)
		case line == "host-restart":
			c.restarts.Add(1)
		case strings.HasPrefix(line, "host-failed"):
			c.failed.Add(1)
			fallthrough
		default:
			if f != nil {
				fmt.Fprintln(f, "child:", line)
			}
		}
	}
	_, _ = io.Copy(io.Discard, r)
}

func (c *hostConsumer) killRunner() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd == nil {
		return 0
	}
	// The host child starts no process but its handler.
	for _, pid := range childrenOf(c.cmd.Process.Pid) {
		if err := syscall.Kill(pid, syscall.SIGKILL); err == nil {
			return pid
		}
	}
	return 0
}

func (c *hostConsumer) crash() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd == nil {
		return nil
	}
	cmd := c.cmd
	c.cmd = nil
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		return fmt.Errorf("SIGKILL the host child: %w", err)
	}
	<-c.exited
	return nil
}

func (c *hostConsumer) stop() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd == nil {
		return nil
	}
	cmd, exited := c.cmd, c.exited
	c.cmd = nil
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
		return nil
	case <-time.After(time.Minute):
		_ = cmd.Process.Kill()
		<-exited
		return fmt.Errorf("the host child (pid %d) did not stop within a minute of SIGTERM", cmd.Process.Pid)
	}
}

func (c *hostConsumer) stats() string {
	return fmt.Sprintf("hosts started %d (after the 3-handler-exit rule: %d), host failures %d",
		c.starts.Load(), c.restarts.Load(), c.failed.Load())
}

func (c *hostConsumer) logTail() string {
	b, _ := os.ReadFile(c.log)
	return string(b[max(0, len(b)-20000):])
}

// childrenOf lists the live processes whose parent is pid.
func childrenOf(pid int) []int {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	var out []int
	for _, p := range stats {
		raw, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		// pid (comm) state ppid …; comm may hold spaces and parentheses.
		f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+1:]))
		if len(f) < 2 || f[0] == "Z" || f[0] == "X" {
			continue
		}
		if ppid, err := strconv.Atoi(f[1]); err == nil && ppid == pid {
			child, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
			out = append(out, child)
		}
	}
	return out
}
