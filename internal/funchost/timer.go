package funchost

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nightshift-jobs/nightshift/internal/store"
	"github.com/nightshift-jobs/nightshift/storage"
)

// scheduleStatus is the timer's status (§3.3); zero times stand for DateTime.MinValue.
type scheduleStatus struct {
	Last, Next, LastUpdated time.Time
}

// TimerStatusBlob is the status blob of a timer function in the host container (§3.3).
func TimerStatusBlob(hostID, function string) string {
	return "timers/" + hostID + "/Host.Functions." + function + "/status"
}

// TimerLockBlob is the singleton lock blob of a timer function's listener (§3.5).
func TimerLockBlob(hostID, function string) string {
	return "locks/" + hostID + "/Host.Functions." + function + ".Listener"
}

func (h *Host) formatStatusTime(t time.Time) string {
	if t.IsZero() {
		return "0001-01-01T00:00:00" + h.now().In(h.opts.TimeZone).Format("-07:00")
	}
	return formatNewtonsoftDate(t.In(h.opts.TimeZone))
}

func (h *Host) statusJSON(s scheduleStatus) json.RawMessage {
	return marshalJSON(struct{ Last, Next, LastUpdated string }{h.formatStatusTime(s.Last), h.formatStatusTime(s.Next), h.formatStatusTime(s.LastUpdated)})
}

func parseStatusTime(s string) (time.Time, error) {
	if len(s) >= 4 && s[:4] == "0001" {
		return time.Time{}, nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.9999999"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not an ISO-8601 time", s)
}

// maxStatusBytes bounds a timer status blob read: it holds three short times.
const maxStatusBytes = 64 * 1024

func (h *Host) readStatus(ctx context.Context, fn *Function) (*scheduleStatus, error) {
	s, err := h.storageFor("")
	if err != nil {
		return nil, err
	}
	raw, _, err := s.Get(ctx, storage.HostContainer, TimerStatusBlob(h.hostID, fn.Name), maxStatusBytes)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var doc struct{ Last, Next, LastUpdated string }
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("timer status blob: %w", err)
	}
	var st scheduleStatus
	if st.Last, err = parseStatusTime(doc.Last); err != nil {
		return nil, err
	}
	if st.Next, err = parseStatusTime(doc.Next); err != nil {
		return nil, err
	}
	if st.LastUpdated, err = parseStatusTime(doc.LastUpdated); err != nil {
		return nil, err
	}
	return &st, nil
}

// writeStatus uploads the status with overwrite; failures are logged and ignored (§3.3).
func (h *Host) writeStatus(ctx context.Context, fn *Function, st scheduleStatus) {
	s, err := h.storageFor("")
	if err == nil {
		if err = h.ensureContainer(ctx, s, storage.HostContainer); err == nil {
			_, err = s.Put(ctx, storage.HostContainer, TimerStatusBlob(h.hostID, fn.Name), h.statusJSON(st), store.PutOptions{})
		}
	}
	if err != nil {
		h.log.Error("Updating the timer status failed", "function", fn.Name, "error", err)
	}
}

// listenerLock is the timer's singleton lease on its lock blob (§3.5).
type listenerLock struct {
	s        store.Store
	name, id string
}

func (l *listenerLock) renew(ctx context.Context) error {
	return l.s.RenewLease(ctx, storage.HostContainer, l.name, l.id)
}

func (l *listenerLock) release(ctx context.Context) error {
	return l.s.ReleaseLease(ctx, storage.HostContainer, l.name, l.id)
}

// runTimer runs a timer function's listener while this host holds the singleton lease
// (§3.5); a non-owner retries every ListenerLockRecoveryPollingInterval.
func (h *Host) runTimer(ctx, invCtx context.Context, fn *Function) {
	log := h.log.With("function", fn.Name)
	s, err := h.storageFor("")
	if err != nil {
		log.Error("Timer listener cannot start", "error", err)
		return
	}
	for ctx.Err() == nil {
		lock, err := h.acquireListenerLock(ctx, s, TimerLockBlob(h.hostID, fn.Name))
		if err != nil {
			log.Warn("Acquiring the timer's singleton lock failed; will retry", "error", err)
		}
		if lock == nil {
			if !sleepCtx(ctx, h.opts.ListenerLockRecoveryPollingInterval) {
				return
			}
			continue
		}
		log.Info("Acquired the timer's singleton lock; starting the timer listener", "lock", lock.name)
		lctx, cancel := context.WithCancel(ctx)
		renewDone := make(chan struct{})
		go func() {
			defer close(renewDone)
			for sleepCtx(lctx, h.opts.ListenerLockPeriod/2) {
				rctx, rcancel := context.WithTimeout(lctx, h.opts.ListenerLockPeriod/2)
				err := lock.renew(rctx)
				rcancel()
				if err != nil && lctx.Err() == nil {
					log.Error("Lost the timer's singleton lock; stopping the timer listener", "error", err)
					cancel()
					return
				}
			}
		}()
		h.timerListener(lctx, invCtx, fn)
		cancel()
		<-renewDone
		rctx, rcancel := completionCtx(ctx)
		_ = lock.release(rctx) // released when the listener stops (§3.5)
		rcancel()
	}
}

// acquireListenerLock returns the lock when this host got the lease, nil when another
// host holds it. The lock blob is created empty first when missing.
func (h *Host) acquireListenerLock(ctx context.Context, s store.Store, name string) (*listenerLock, error) {
	if err := h.ensureContainer(ctx, s, storage.HostContainer); err != nil {
		return nil, err
	}
	_, err := s.Put(ctx, storage.HostContainer, name, nil, store.PutOptions{IfNoneMatchAny: true})
	if err != nil && !errors.Is(err, store.ErrConflict) {
		return nil, err
	}
	id, err := s.AcquireLease(ctx, storage.HostContainer, name, h.opts.ListenerLockPeriod)
	if err != nil {
		if errors.Is(err, store.ErrConflict) {
			return nil, nil // held by another host
		}
		return nil, err
	}
	return &listenerLock{s: s, name: name, id: id}, nil
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// timerListener is TimerListener.StartAsync and the fire loop (§3.4, §3.6). It returns when
// ctx (the lock's context) is cancelled; an invocation in progress finishes first.
func (h *Host) timerListener(ctx, invCtx context.Context, fn *Function) {
	tz := h.opts.TimeZone
	sched := fn.schedule
	now := h.now().In(tz)
	var status *scheduleStatus
	pastDue := false
	if fn.monitor {
		st, err := h.readStatus(ctx, fn)
		if err != nil {
			h.log.Error("Reading the timer status failed", "function", fn.Name, "error", err)
		}
		var recordedNext time.Time
		if st == nil {
			next := sched.next(now)
			h.writeStatus(ctx, fn, scheduleStatus{Next: next, LastUpdated: now})
			recordedNext = next
		} else {
			var expected time.Time
			switch {
			case !st.Last.IsZero():
				expected = sched.next(st.Last.In(tz))
			case !st.LastUpdated.IsZero():
				expected = sched.next(st.LastUpdated.In(tz))
			default:
				expected = sched.next(now)
			}
			if !st.Next.Equal(expected) {
				// The schedule changed; don't report past-due for that.
				if now.After(expected) {
					expected = sched.next(now)
				}
				*st = scheduleStatus{Next: expected, LastUpdated: now}
				h.writeStatus(ctx, fn, *st)
			}
			recordedNext = st.Next
			status = st
		}
		pastDue = now.After(recordedNext)
	}
	if status == nil {
		status = &scheduleStatus{Next: sched.next(now)}
	}
	var wait time.Duration
	isPastDue, startup := false, false
	switch {
	case pastDue:
		isPastDue = true // exactly one catch-up, however many were missed
	case fn.Trigger.RunOnStartup:
		startup = true
	default:
		wait = status.Next.Sub(h.now())
	}
	h.log.Info("Timer listener started", "function", fn.Name, "schedule", sched.expr, "next", status.Next.In(tz).Format(time.RFC3339), "pastDue", pastDue, "monitor", fn.monitor)
	for {
		if wait > 0 && !sleepCtx(ctx, wait) {
			return
		}
		if ctx.Err() != nil {
			return
		}
		t := h.now().In(tz)
		if !isPastDue && !startup && status.Next.After(t) {
			t = status.Next // clock skew: a normal fire never records a time before Next
		}
		h.fireTimer(invCtx, fn, status, isPastDue)
		*status = scheduleStatus{Last: t, Next: sched.next(t), LastUpdated: t}
		if fn.monitor {
			h.writeStatus(invCtx, fn, *status)
		}
		isPastDue, startup = false, false
		wait = status.Next.Sub(h.now())
		if status.Next.IsZero() {
			h.log.Warn("The timer schedule has no further occurrences", "function", fn.Name)
			<-ctx.Done()
			return
		}
	}
}

// fireTimer invokes a timer function (§1.6); errors are logged and swallowed (no retry).
func (h *Host) fireTimer(ctx context.Context, fn *Function, status *scheduleStatus, isPastDue bool) {
	inv := h.newInvocation(fn, "Timer fired at "+h.now().In(h.opts.TimeZone).Format("2006-01-02T15:04:05.0000000-07:00"))
	statusJSON := json.RawMessage("null")
	if fn.monitor {
		statusJSON = h.statusJSON(*status)
	}
	var b bytes.Buffer
	b.WriteString(`{"Schedule":{"AdjustForDST":`)
	b.WriteString(fmt.Sprint(fn.schedule.cron != nil))
	b.WriteString(`},"ScheduleStatus":`)
	b.Write(statusJSON)
	b.WriteString(`,"IsPastDue":`)
	b.WriteString(fmt.Sprint(isPastDue))
	b.WriteString("}")
	inv.data[fn.Trigger.Name] = b.Bytes()
	inv.bd.set("TimerTrigger", nil)
	inv.bd.set("sys", inv.sys)
	_, _ = h.invoke(ctx, inv)
}
