package funchost

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blockblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/lease"
	"github.com/google/uuid"

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

func (h *Host) hostBlob(name string) (*blockblob.Client, *storage.Clients, error) {
	c, err := h.storageFor("")
	if err != nil {
		return nil, nil, err
	}
	return c.Blob.ServiceClient().NewContainerClient(storage.HostContainer).NewBlockBlobClient(name), c, nil
}

func (h *Host) readStatus(ctx context.Context, fn *Function) (*scheduleStatus, error) {
	bc, _, err := h.hostBlob(TimerStatusBlob(h.hostID, fn.Name))
	if err != nil {
		return nil, err
	}
	resp, err := bc.DownloadStream(ctx, nil)
	if storage.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	raw, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	var doc struct{ Last, Next, LastUpdated string }
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("timer status blob: %w", err)
	}
	var s scheduleStatus
	if s.Last, err = parseStatusTime(doc.Last); err != nil {
		return nil, err
	}
	if s.Next, err = parseStatusTime(doc.Next); err != nil {
		return nil, err
	}
	if s.LastUpdated, err = parseStatusTime(doc.LastUpdated); err != nil {
		return nil, err
	}
	return &s, nil
}

// writeStatus uploads the status with overwrite; failures are logged and ignored (§3.3).
func (h *Host) writeStatus(ctx context.Context, fn *Function, s scheduleStatus) {
	bc, c, err := h.hostBlob(TimerStatusBlob(h.hostID, fn.Name))
	if err == nil {
		if err = h.ensureContainer(ctx, c, storage.HostContainer); err == nil {
			_, err = bc.UploadBuffer(ctx, h.statusJSON(s), nil)
		}
	}
	if err != nil {
		h.log.Error("Updating the timer status failed", "function", fn.Name, "error", err)
	}
}

// runTimer runs a timer function's listener while this host holds the singleton lease
// (§3.5); a non-owner retries every ListenerLockRecoveryPollingInterval.
func (h *Host) runTimer(ctx, invCtx context.Context, fn *Function) {
	log := h.log.With("function", fn.Name)
	bc, c, err := h.hostBlob(TimerLockBlob(h.hostID, fn.Name))
	if err != nil {
		log.Error("Timer listener cannot start", "error", err)
		return
	}
	period := int32(h.opts.ListenerLockPeriod / time.Second)
	for ctx.Err() == nil {
		lc, err := h.acquireListenerLock(ctx, c, bc, period)
		if err != nil {
			log.Warn("Acquiring the timer's singleton lock failed; will retry", "error", err)
		}
		if lc == nil {
			if !sleepCtx(ctx, h.opts.ListenerLockRecoveryPollingInterval) {
				return
			}
			continue
		}
		log.Info("Acquired the timer's singleton lock; starting the timer listener", "lock", TimerLockBlob(h.hostID, fn.Name))
		lctx, cancel := context.WithCancel(ctx)
		renewDone := make(chan struct{})
		go func() {
			defer close(renewDone)
			for sleepCtx(lctx, h.opts.ListenerLockPeriod/2) {
				rctx, rcancel := context.WithTimeout(lctx, h.opts.ListenerLockPeriod/2)
				_, err := lc.RenewLease(rctx, nil)
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
		_, _ = lc.ReleaseLease(rctx, nil) // released when the listener stops (§3.5)
		rcancel()
	}
}

// acquireListenerLock returns the lease client when this host got the lease, nil when
// another host holds it.
func (h *Host) acquireListenerLock(ctx context.Context, c *storage.Clients, bc *blockblob.Client, period int32) (*lease.BlobClient, error) {
	if err := h.ensureContainer(ctx, c, storage.HostContainer); err != nil {
		return nil, err
	}
	_, err := bc.UploadBuffer(ctx, nil, &blockblob.UploadBufferOptions{AccessConditions: &blob.AccessConditions{
		ModifiedAccessConditions: &blob.ModifiedAccessConditions{IfNoneMatch: to.Ptr(azcore.ETagAny)}}})
	if err != nil && !isStatus(err, http.StatusConflict) && !isStatus(err, http.StatusPreconditionFailed) {
		return nil, err
	}
	lc, err := lease.NewBlobClient(bc, &lease.BlobClientOptions{LeaseID: to.Ptr(uuid.NewString())})
	if err != nil {
		return nil, err
	}
	if _, err := lc.AcquireLease(ctx, period, nil); err != nil {
		if isStatus(err, http.StatusConflict) {
			return nil, nil // held by another host
		}
		return nil, err
	}
	return lc, nil
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
