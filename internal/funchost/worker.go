package funchost

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
)

// worker is one running handler process.
type worker struct {
	id     string
	cmd    *exec.Cmd
	port   int
	base   string // http://127.0.0.1:{port}
	exited chan struct{}
	// disposing is set when the host kills the process itself (function timeout,
	// shutdown); such an exit is not an error event (§1.3, §1.10).
	mu        sync.Mutex
	disposing bool
}

func (w *worker) kill() {
	w.mu.Lock()
	w.disposing = true
	w.mu.Unlock()
	killProcess(w.cmd)
}

func (w *worker) isDisposing() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.disposing
}

// workerManager starts the handler, restarts it and enforces the restart limit (§1.3).
type workerManager struct {
	h      *Host
	fatal  func(error)
	client *http.Client

	mu      sync.Mutex
	cur     *worker       // ready worker, nil while (re)starting
	changed chan struct{} // closed and replaced whenever cur or failed changes
	failed  error         // set when the host gives up on the handler
	errs    []time.Time   // error events (§1.3)
}

func newWorkerManager(h *Host, fatal func(error)) *workerManager {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = 256
	tr.MaxIdleConnsPerHost = 256
	tr.Proxy = nil
	m := &workerManager{h: h, fatal: fatal, changed: make(chan struct{})}
	// §1.10: the HttpClient timeout is functionTimeout + 1 min (unbounded when -1); the
	// function timeout itself is enforced per invocation.
	timeout := time.Duration(0)
	if h.cfg.FunctionTimeout > 0 {
		timeout = h.cfg.FunctionTimeout + time.Minute
	}
	var rt http.RoundTripper = tr
	if h.opts.Handler != nil {
		rt = inProcessTransport{h: h.opts.Handler}
	}
	m.client = &http.Client{
		Transport: rt,
		Timeout:   timeout,
		// With forwarding, the host's HttpClient does not follow redirects (§1.1); the JSON
		// protocol never sees one from a sane handler, so never follow.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return m
}

func (m *workerManager) setState(w *worker, failed error) {
	m.mu.Lock()
	m.cur = w
	if failed != nil {
		m.failed = failed
	}
	close(m.changed)
	m.changed = make(chan struct{})
	m.mu.Unlock()
}

// acquire waits until a handler is ready (invocations wait while the handler starts or
// restarts, §1.3).
func (m *workerManager) acquire(ctx context.Context) (*worker, error) {
	for {
		m.mu.Lock()
		w, failed, ch := m.cur, m.failed, m.changed
		m.mu.Unlock()
		if failed != nil {
			return nil, failed
		}
		if w != nil {
			return w, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for the handler to be ready: %w", ctx.Err())
		case <-ch:
		}
	}
}

// restart kills w (if it is still the current worker) so the supervisor starts a new one
// without counting an error event (§1.10 function timeout). Deviation: an in-process
// handler (Options.Handler) is not restarted; the timed-out invocation's context is
// cancelled and the handler goes on serving.
func (m *workerManager) restart(w *worker) {
	if w.cmd == nil {
		return
	}
	m.mu.Lock()
	if m.cur == w {
		m.cur = nil
	}
	m.mu.Unlock()
	w.kill()
}

// supervise runs until ctx is cancelled: start, wait for exit, restart. An in-process
// handler is ready at once and never exits.
func (m *workerManager) supervise(ctx context.Context) {
	if m.h.opts.Handler != nil {
		m.setState(&worker{id: uuid.NewString(), base: inProcessBase}, nil)
		<-ctx.Done()
		m.setState(nil, errors.New("the local host is shutting down"))
		return
	}
	for ctx.Err() == nil {
		w, err := m.start(ctx)
		if ctx.Err() != nil {
			if w != nil {
				w.kill()
				<-w.exited
			}
			break
		}
		if err != nil {
			m.h.log.Error("Handler start failed", "error", err)
			if m.errorEvent(err) {
				return
			}
			continue
		}
		m.setState(w, nil)
		select {
		case <-ctx.Done():
			w.kill()
			<-w.exited
		case <-w.exited:
			m.mu.Lock()
			if m.cur == w {
				m.cur = nil
			}
			m.mu.Unlock()
			if w.isDisposing() {
				m.h.log.Info("Handler process stopped by the host; restarting", "pid", w.cmd.Process.Pid)
				continue
			}
			err := fmt.Errorf("handler process %d exited: %s", w.cmd.Process.Pid, w.cmd.ProcessState)
			m.h.log.Error("Handler process exited unexpectedly", "pid", w.cmd.Process.Pid, "state", w.cmd.ProcessState.String())
			if m.errorEvent(err) {
				return
			}
		}
	}
	m.setState(nil, errors.New("the local host is shutting down"))
}

// errorEvent records a start timeout or unexpected exit; it reports true when the host
// must stop (§1.3: 3 errors, the stack cleared when errors are more than 30 min apart).
func (m *workerManager) errorEvent(err error) bool {
	now := time.Now()
	if n := len(m.errs); n > 0 && now.Sub(m.errs[n-1]) > 30*time.Minute {
		m.errs = nil
	}
	m.errs = append(m.errs, now)
	if len(m.errs) >= 3 {
		fatal := fmt.Errorf("%w (last error: %v)", ErrHandlerRestarts, err)
		m.h.log.Error(ErrHandlerRestarts.Error(), "lastError", err)
		m.setState(nil, fatal)
		m.fatal(fatal)
		return true
	}
	return false
}

func freePort() (int, error) {
	// §1.2: bind 127.0.0.1:0 and read back the port.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// start launches the handler and probes it until ready (§1.2, §1.3).
func (m *workerManager) start(ctx context.Context) (*worker, error) {
	h := m.h
	port, err := freePort()
	if err != nil {
		return nil, fmt.Errorf("pick a port: %w", err)
	}
	w := &worker{id: uuid.NewString(), port: port, base: "http://127.0.0.1:" + strconv.Itoa(port), exited: make(chan struct{})}
	cmd := exec.Command(h.cfg.Handler.Path, h.cfg.Handler.Args...)
	cmd.Dir = h.cfg.Handler.Dir
	cmd.Env = append(h.handlerEnv(),
		"FUNCTIONS_CUSTOMHANDLER_PORT="+strconv.Itoa(port),
		"FUNCTIONS_HTTPWORKER_PORT="+strconv.Itoa(port),
		"FUNCTIONS_CUSTOMHANDLER_WORKER_ID="+w.id,
		"FUNCTIONS_HTTPWORKER_ID="+w.id,
		"FUNCTIONS_APP_ROOT_PATH="+h.appRoot,
	)
	setProcAttrs(cmd)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start handler %s (customHandler.description.defaultExecutablePath in %s): %w", h.cfg.Handler.Path, h.cfg.File, err)
	}
	w.cmd = cmd
	console := h.log.With("category", "Host.Function.Console", "pid", cmd.Process.Pid)
	var pipes sync.WaitGroup
	pipes.Add(2)
	go func() { defer pipes.Done(); relay(stdout, func(line string) { console.Info(line) }) }()
	go func() {
		defer pipes.Done()
		// §1.2: stderr lines at Error, or Warning when they contain "warn".
		relay(stderr, func(line string) {
			if strings.Contains(strings.ToLower(line), "warn") {
				console.Warn(line)
			} else {
				console.Error(line)
			}
		})
	}()
	go func() {
		pipes.Wait()
		_ = cmd.Wait()
		close(w.exited)
	}()
	h.log.Info("Started handler process", "pid", cmd.Process.Pid, "path", h.cfg.Handler.Path, "port", port, "workerId", w.id)

	// §1.3: GET / every 25 ms for up to the initialisation timeout; any HTTP response
	// counts as ready; only a socket-level failure means "not yet".
	deadline := time.Now().Add(h.opts.HandlerStartTimeout)
	probe := &http.Client{Timeout: time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, w.base+"/", nil)
		resp, err := probe.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			h.log.Info("Handler is ready", "pid", cmd.Process.Pid, "port", port)
			return w, nil
		}
		select {
		case <-w.exited:
			return nil, fmt.Errorf("handler process %d exited during start-up: %s", cmd.Process.Pid, cmd.ProcessState)
		case <-ctx.Done():
			w.kill()
			<-w.exited
			return nil, ctx.Err()
		case <-time.After(25 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			w.kill()
			<-w.exited
			//lint:ignore ST1005 the Functions host's own message (§1.3); tests compare it
			return nil, errors.New("Initializing HttpWorker timed out.")
		}
	}
}

func relay(r io.Reader, log func(string)) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		log(sc.Text())
	}
	_, _ = io.Copy(io.Discard, r)
}
