package nightshift

import (
	"context"
	"fmt"
	"time"
)

// concurrency is the flow-limit feature (Limits: Concurrency, Rate): its admit hook takes
// a slot of the job's kind and key, then spends one start of its rate, before the job
// runs, or sends the job back to its queue to try again later, unchanged (not an
// attempt). The slot is released when the
// delivery ends, however it ends (attempt.releaseHeld); a process that dies holding it
// frees it when its lease expires.
type concurrency struct {
	x *executor
}

func (c concurrency) admit(ctx context.Context, a *attempt) (outcome, bool) {
	lim := a.entry.opts.Limits.withDefaults()
	if (lim.Concurrency <= 0 && lim.Rate <= 0) || a.argsErr != nil {
		return outcome{}, true
	}
	key := limitKey(a.args, lim.KeyArg)
	sl := &slots{s: c.x.ext.Store(), container: c.x.ext.Layout.UniqueContainer(), log: c.x.log}
	if lim.Concurrency > 0 {
		h, err := sl.acquire(ctx, a.env.Kind, key, lim.Concurrency, lim.slotLease())
		if err != nil {
			return infraFailure(err), false
		}
		if h == nil {
			return c.x.waitForLimit(ctx, a, fmt.Sprintf("all %d concurrency slots of kind %s (key %q) are taken", lim.Concurrency, a.env.Kind, key), lim.waitDelay())
		}
		a.hold(h.release)
	}
	if lim.Rate > 0 {
		// A slot taken above is released when admit ends here (attempt.releaseHeld).
		at, reserved, err := sl.takeStart(ctx, a.env.Kind, key, lim)
		if err != nil {
			return infraFailure(err), false
		}
		if !reserved {
			return c.x.waitForLimit(ctx, a, fmt.Sprintf("kind %s (key %q) is at its rate of %d per %s", a.env.Kind, key, lim.Rate, lim.Per), lim.rateWait(time.Until(at)))
		}
		if !sleepUntil(ctx, time.Until(at)) {
			// Shutting down: the reserved start is not used (the rate errs low), and the
			// message comes back when the invocation fails.
			return infraFailure(context.Cause(ctx)), false
		}
	}
	return outcome{}, true
}

func (concurrency) ended(context.Context, jobEnd) error { return nil }

// waitForLimit puts the job back on its queue, unchanged (the same attempt, which is not
// counted), invisible for wait; the host then deletes the delivered message. The status
// is not written. ok is always false.
func (x *executor) waitForLimit(ctx context.Context, a *attempt, why string, wait time.Duration) (outcome, bool) {
	if err := x.enqueue(ctx, a.d.Queue, a.env, wait); err != nil {
		return infraFailure(err), false
	}
	a.log.Info("job waits for a flow-control limit", "outcome", "throttled", "reason", why, "wait_ms", wait.Milliseconds())
	return outcome{Outcome: "throttled", Logs: []string{fmt.Sprintf("job %s: %s; trying again in %s", a.env.JobID, why, wait.Round(time.Millisecond))}}, false
}

// sleepUntil waits d, or until ctx ends (false).
func sleepUntil(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// hold keeps release to run when the delivery ends (releaseHeld).
func (a *attempt) hold(release func()) { a.held = append(a.held, release) }

// releaseHeld releases what the admit hooks hold (concurrency slots), newest first. It is
// safe on a nil attempt and runs each release once.
func (a *attempt) releaseHeld() {
	if a == nil {
		return
	}
	for i := len(a.held) - 1; i >= 0; i-- {
		a.held[i]()
	}
	a.held = nil
}
