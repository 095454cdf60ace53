//go:build linux

package chaos

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nightshift-jobs/nightshift/internal/proc"
	"github.com/nightshift-jobs/nightshift/internal/testenv"
)

// Worker settings of the fleet consumer.
const (
	// fleetReceiveVisibility is the workers' receive visibility (chaos.EnvReceiveVisibility),
	// the host child's childReceiveVisibility: the messages a SIGKILLed worker held
	// reappear after it.
	fleetReceiveVisibility = childReceiveVisibility
	// fleetDrainTimeout is the workers' --drain-timeout when the test stops them.
	fleetDrainTimeout = 5 * time.Second
)

// fleetConsumer is a fleet of `chaoshandler worker` processes (worker mode: the handler
// binary consuming the queues itself) and, when host is set, the local host child next to
// them on the same queues: a mixed fleet of competing consumers. killRunner SIGKILLs one
// worker, round robin, and starts a new one in its place; crash SIGKILLs every worker and
// the host.
type fleetConsumer struct {
	bin  string
	args []string
	env  []string
	dir  string // the workers' logs
	runs string // the handler's run records (testenv.EnvRunsDir)
	host *hostConsumer

	mu      sync.Mutex
	workers []*workerProc // by slot; nil when the slot has no process
	next    int           // the slot killRunner kills next
	pids    map[int]bool  // every worker process started

	starts, failed atomic.Int64
}

// workerProc is one worker process.
type workerProc struct {
	cmd    *exec.Cmd
	exited chan struct{}
	killed atomic.Bool // SIGKILLed or SIGTERMed by the consumer
}

// newFleetConsumer prepares n workers of the chaos handler on the host child's app folder
// settings (its host.json: test-speed polling, a 1 s release of failed messages) and, with
// withHost, the host child too. settings are the app settings every process gets.
func newFleetConsumer(t *testing.T, settings map[string]string, n int, withHost bool) *fleetConsumer {
	t.Helper()
	h := newHostConsumer(t, settings) // builds the handler and the app folder
	c := &fleetConsumer{
		bin:     testenv.BuildBinary(t, "./internal/chaos/chaoshandler"), // built once, as for the host
		dir:     t.TempDir(),
		runs:    settings[testenv.EnvRunsDir],
		workers: make([]*workerProc, n),
		pids:    map[int]bool{},
		args: []string{"worker", "--health-addr", "off", "--no-timers",
			"--drain-timeout", fleetDrainTimeout.String(), "--host-json", filepath.Join(h.appDir, "host.json")},
	}
	if withHost {
		c.host = h
	}
	c.env = append(os.Environ(), EnvReceiveVisibility+"="+fleetReceiveVisibility.String())
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

func (c *fleetConsumer) name() string {
	s := fmt.Sprintf("a fleet of %d workers (chaoshandler worker processes)", len(c.workers))
	if c.host != nil {
		s += " and the local host (funchost child process)"
	}
	return s
}

func (c *fleetConsumer) runner() string { return "worker" }

func (c *fleetConsumer) whole() string {
	if c.host != nil {
		return "fleet+host"
	}
	return "fleet"
}

func (c *fleetConsumer) start() error {
	if c.host != nil {
		if err := c.host.start(); err != nil {
			return err
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range c.workers {
		if c.workers[i] != nil {
			return fmt.Errorf("worker %d is already running", i)
		}
		if err := c.startWorker(i); err != nil {
			return err
		}
	}
	return nil
}

// startWorker starts the worker of slot i, logging to its own file. c.mu is held.
func (c *fleetConsumer) startWorker(i int) error {
	logf, err := os.OpenFile(filepath.Join(c.dir, fmt.Sprintf("worker-%d.log", i)), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(c.bin, c.args...)
	cmd.Env = c.env
	cmd.Stdout, cmd.Stderr = logf, logf
	proc.DieWithParent(cmd) // a dying test leaves no worker behind
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start worker %d: %w", i, err)
	}
	fmt.Fprintf(logf, "--- worker %d started: pid %d\n", i, cmd.Process.Pid)
	w := &workerProc{cmd: cmd, exited: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		if !w.killed.Load() {
			c.failed.Add(1)
			fmt.Fprintf(logf, "--- worker %d (pid %d) exited on its own: %v\n", i, cmd.Process.Pid, err)
		}
		logf.Close()
		close(w.exited)
	}()
	c.workers[i] = w
	c.pids[cmd.Process.Pid] = true
	c.starts.Add(1)
	return nil
}

// killRunner SIGKILLs the next worker (round robin), waits for it to end and starts a new
// one in its slot. A worker that had exited on its own is replaced too.
func (c *fleetConsumer) killRunner() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	for range c.workers {
		i := c.next
		c.next = (c.next + 1) % len(c.workers)
		w := c.workers[i]
		if w == nil {
			continue
		}
		w.killed.Store(true)
		err := w.cmd.Process.Signal(syscall.SIGKILL)
		<-w.exited
		c.workers[i] = nil
		if serr := c.startWorker(i); serr != nil {
			return 0 // the storm goes on with one worker fewer; stats counts it
		}
		if err == nil {
			return w.cmd.Process.Pid
		}
	}
	return 0
}

func (c *fleetConsumer) crash() error {
	c.mu.Lock()
	for i, w := range c.workers {
		if w == nil {
			continue
		}
		w.killed.Store(true)
		_ = w.cmd.Process.Signal(syscall.SIGKILL)
		<-w.exited
		c.workers[i] = nil
	}
	c.mu.Unlock()
	if c.host != nil {
		return c.host.crash()
	}
	return nil
}

// stop SIGTERMs every worker (they drain: in-flight jobs finish within the drain timeout,
// the rest are released) and the host, and waits for them.
func (c *fleetConsumer) stop() error {
	c.mu.Lock()
	var errs []error
	for _, w := range c.workers {
		if w != nil {
			w.killed.Store(true)
			_ = w.cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	for i, w := range c.workers {
		if w == nil {
			continue
		}
		select {
		case <-w.exited:
		case <-time.After(time.Minute):
			_ = w.cmd.Process.Kill()
			<-w.exited
			errs = append(errs, fmt.Errorf("worker %d (pid %d) did not stop within a minute of SIGTERM", i, w.cmd.Process.Pid))
		}
		if code := w.cmd.ProcessState.ExitCode(); code != 0 && len(errs) == 0 {
			errs = append(errs, fmt.Errorf("worker %d (pid %d) exited %d after SIGTERM, want 0 (a clean drain)", i, w.cmd.Process.Pid, code))
		}
		c.workers[i] = nil
	}
	c.mu.Unlock()
	if c.host != nil {
		errs = append(errs, c.host.stop())
	}
	return errors.Join(errs...)
}

// finishedRuns counts the finished runs in the handler's run records, and those of them
// that a worker ran (the others ran in the host's handler).
func (c *fleetConsumer) finishedRuns() (all, byWorkers int) {
	ends, _ := filepath.Glob(filepath.Join(c.runs, "*"+endSuffix))
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range ends {
		_, finished := Runs(c.runs, strings.TrimSuffix(filepath.Base(p), endSuffix))
		for _, r := range finished {
			all++
			if c.pids[r.PID] {
				byWorkers++
			}
		}
	}
	return all, byWorkers
}

func (c *fleetConsumer) stats() string {
	all, byWorkers := c.finishedRuns()
	s := fmt.Sprintf("workers started %d, worker failures %d, finished runs in workers %d of %d", c.starts.Load(), c.failed.Load(), byWorkers, all)
	if c.host != nil {
		s += ", " + c.host.stats()
	}
	return s
}

func (c *fleetConsumer) logTail() string {
	var b strings.Builder
	logs, _ := filepath.Glob(filepath.Join(c.dir, "worker-*.log"))
	for _, p := range logs {
		raw, _ := os.ReadFile(p)
		fmt.Fprintf(&b, "== %s (tail)\n%s\n", filepath.Base(p), raw[max(0, len(raw)-8000):])
	}
	if c.host != nil {
		fmt.Fprintf(&b, "== host child (tail)\n%s", c.host.logTail())
	}
	return b.String()
}
