package worker

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nightshift-jobs/nightshift/internal/funchost"
	"github.com/nightshift-jobs/nightshift/internal/store"
	"github.com/nightshift-jobs/nightshift/storage"
)

// storageCheckEvery is how long a storage answer counts for /readyz.
const storageCheckEvery = 2 * time.Second

// health serves GET /healthz (200 while the process lives) and GET /readyz (200 once the
// listeners run and storage answered; 503 while starting, draining, or when storage does
// not answer).
type health struct {
	clients  *storage.Clients
	host     *funchost.Host
	draining atomic.Bool

	mu      sync.Mutex
	checked time.Time
	err     error
}

func newHealth(clients *storage.Clients, host *funchost.Host) *health {
	return &health{clients: clients, host: host}
}

// drain makes /readyz answer 503 from now on.
func (h *health) drain() { h.draining.Store(true) }

// ServeHTTP implements http.Handler.
func (h *health) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "use GET", http.StatusMethodNotAllowed)
		return
	}
	switch r.URL.Path {
	case "/healthz":
		answer(w, http.StatusOK, "ok")
	case "/readyz":
		code, status := h.ready(r.Context())
		answer(w, code, status)
	default:
		http.NotFound(w, r)
	}
}

func (h *health) ready(ctx context.Context) (int, string) {
	if h.draining.Load() {
		return http.StatusServiceUnavailable, "draining"
	}
	select {
	case <-h.host.Started():
	default:
		return http.StatusServiceUnavailable, "starting"
	}
	if err := h.storage(ctx); err != nil {
		return http.StatusServiceUnavailable, "storage unreachable: " + err.Error()
	}
	return http.StatusOK, "ready"
}

// storage asks the queue service for the jobs queue's depth, at most once per
// storageCheckEvery; a missing queue is an answer too.
func (h *health) storage(ctx context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.checked.IsZero() && time.Since(h.checked) < storageCheckEvery {
		return h.err
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := h.clients.Store().Count(cctx, h.clients.Layout.JobsQueue())
	if errors.Is(err, store.ErrNotFound) {
		err = nil
	}
	h.checked, h.err = time.Now(), err
	return err
}

func answer(w http.ResponseWriter, code int, status string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write([]byte(status + "\n"))
}
