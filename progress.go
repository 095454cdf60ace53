package nightshift

import (
	"context"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/nightshift-jobs/nightshift/envelope"
	"github.com/nightshift-jobs/nightshift/record"
)

// ProgressInterval is the least time between two progress writes of one job: however
// often job code calls Job.Progress, its status is written at most this often, and the
// last value is always recorded with the job's end.
const ProgressInterval = 2 * time.Second

// maxProgressMessage bounds a progress message kept in the status.
const maxProgressMessage = 512

// progressReporter throttles one attempt's progress writes. The first report is written at
// once; later ones within interval of the last write are folded into one trailing write.
type progressReporter struct {
	write    func(ctx context.Context, p *record.Progress) error
	interval time.Duration
	log      *slog.Logger
	ctx      context.Context

	mu        sync.Mutex
	latest    *record.Progress
	lastWrite time.Time
	pending   bool // a write is scheduled or running
	closed    bool
	wg        sync.WaitGroup
	writes    int
	done      chan struct{} // closed by stop: a scheduled write is dropped
	// observe, when the context carries one (withProgressObserver), sees every report
	// before throttling: the test kit records them all.
	observe func(record.Progress)
}

func newProgressReporter(ctx context.Context, interval time.Duration, log *slog.Logger, write func(context.Context, *record.Progress) error) *progressReporter {
	observe, _ := ctx.Value(progressObserverKey{}).(func(record.Progress))
	return &progressReporter{ctx: ctx, interval: interval, log: log, write: write, done: make(chan struct{}), observe: observe}
}

type progressObserverKey struct{}

// withProgressObserver makes the progress reporters created under ctx call observe with
// every report, in order, before throttling.
func withProgressObserver(ctx context.Context, observe func(record.Progress)) context.Context {
	return context.WithValue(ctx, progressObserverKey{}, observe)
}

func (r *progressReporter) report(_ context.Context, fraction float64, message string) {
	if r == nil {
		return
	}
	if math.IsNaN(fraction) {
		fraction = 0
	}
	p := &record.Progress{Fraction: min(max(fraction, 0), 1), Message: envelope.Truncate(message, maxProgressMessage), At: time.Now().UTC()}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.observe != nil && !r.closed {
		r.observe(*p)
	}
	r.latest = p
	if r.closed || r.pending {
		return
	}
	r.pending = true
	wait := time.Until(r.lastWrite.Add(r.interval))
	r.wg.Add(1)
	go r.flushAfter(wait)
}

// flushAfter waits, then writes the latest value (which may have changed meanwhile).
func (r *progressReporter) flushAfter(wait time.Duration) {
	defer r.wg.Done()
	if wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.done:
		}
	}
	r.mu.Lock()
	if r.closed {
		r.pending = false
		r.mu.Unlock()
		return
	}
	p := r.latest
	r.lastWrite = time.Now()
	r.writes++
	r.mu.Unlock()
	if err := r.write(r.ctx, p); err != nil {
		r.log.Warn("could not record progress", "error", err.Error())
	}
	r.mu.Lock()
	r.pending = false
	r.mu.Unlock()
}

// stop ends reporting: no write starts after it, a write in flight is waited for, and the
// latest value is returned so the job's final status carries it.
func (r *progressReporter) stop() *record.Progress {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	if !r.closed {
		r.closed = true
		close(r.done)
	}
	r.mu.Unlock()
	r.wg.Wait()
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.latest
}

// progressWriter returns the write function of a job attempt's progress: the status
// becomes (or stays) "running" for this attempt with the new progress, unless the status
// has moved past this attempt.
func (x *executor) progressWriter(env *envelope.Envelope, maxAttempts int, started time.Time, queue string) func(context.Context, *record.Progress) error {
	return func(ctx context.Context, p *record.Progress) error {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
		defer cancel()
		running := record.Running(env, record.Run{MaxAttempts: maxAttempts, Queue: queue, StartedAt: started, Progress: p})
		_, _, err := x.store.UpdateStatus(ctx, env.JobID, running.Apply)
		return err
	}
}

// wrote reports whether any progress write started (the status then moved past the
// version read before the run).
func (r *progressReporter) wrote() bool {
	if r == nil {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.writes > 0
}
