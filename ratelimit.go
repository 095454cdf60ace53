package nightshift

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/nightshift-jobs/nightshift/internal/store"
)

// A rate limit (Limits.Rate per Limits.Per, with Limits.Burst) is a generic cell rate
// algorithm over one small blob per kind and key: the blob holds the theoretical arrival
// time (TAT) of the next start, and each admitted start moves it on by Per/Rate with a
// conditional write (If-Match on the blob's ETag), so two processes never both spend
// the same start. A start is due at max(TAT, now) − (Burst−1)·Per/Rate. When that is
// within reserveHorizon the admission reserves it (moves TAT on) and the job sleeps in
// its process until then; a start further away is not reserved and the job waits on its
// queue. With Burst 1 the starts of a kind (and key) are at least Per/Rate apart across
// the fleet, so any window [t, t+Per) holds at most Rate of them; with Burst b, at most
// Rate+b−1.

// A start that is not within the horizon is not reserved, but the refused job takes a
// place in line: the blob's Tail is the start the last refused job was told to come
// back for, and each refusal moves it on by Per/Rate (in the same conditional write), so
// the refused jobs of a backlog come back one interval apart, each when its own start is
// about to be within the horizon, instead of all at once. Tail only spreads returns; it
// never admits a start, so it cannot make the limit err high.
//
// The admissions of one process go to the blob in batches (rateGate): while one read
// and conditional write is under way, the jobs of that process that arrive wait, and the
// next write reserves (or places in line) all of them at once. Only the processes, not
// every job in flight, race for the blob, and one storage turnaround serves as many jobs
// as arrived meanwhile, so a slow storage account does not cap the rate at one start per
// turnaround.

// rateState is the rate blob's content.
type rateState struct {
	TAT time.Time `json:"tat"`
	// Tail is the start the last refused job was given a place for (zero when none).
	Tail time.Time `json:"tail,omitzero"`
}

// rateBlob is the name of the rate-limit blob of kind and key.
func rateBlob(kind, key string) string {
	return flowPrefix + "rate/" + kind + "/" + keyHash(key) + ".json"
}

// rateTries bounds the conditional writes one batch of admissions tries when other
// processes win the blob meanwhile; past it the jobs wait like refused ones.
const rateTries = 10

// reserveHorizon is how far ahead a start is reserved: a job whose start is due within
// it sleeps until then, holding its message, instead of going back to the queue.
const reserveHorizon = 2 * time.Second

// rateBackoff is the most one lost conditional write waits (times the tries so far)
// before reading again, so that processes racing for the blob do not retry in step.
const rateBackoff = 5 * time.Millisecond

// rateGrant is one admission's answer: with reserved, the job starts at at; else it
// comes back at at.
type rateGrant struct {
	at       time.Time
	reserved bool
}

// takeStart reserves one start of the rate limit. With reserved true, the job may start
// at at; else at is when the job should come back (its place in line, or, when every
// conditional write was lost, about when the line seen is within the horizon).
func (sl *slots) takeStart(ctx context.Context, kind, key string, l Limits) (at time.Time, reserved bool, err error) {
	name := rateBlob(kind, key)
	v, _ := rateGates.LoadOrStore(rateGateKey{s: sl.s, name: sl.container + "/" + name}, &rateGate{})
	g, err := v.(*rateGate).take(ctx, func(ctx context.Context, n int) ([]rateGrant, error) {
		return sl.takeStarts(ctx, name, l, n)
	})
	return g.at, g.reserved, err
}

// takeStarts admits n jobs with one read and conditional write of the rate blob (more
// when other processes win it): the first ones whose starts are within the horizon are
// reserved, the rest take places in line.
func (sl *slots) takeStarts(ctx context.Context, name string, l Limits, n int) ([]rateGrant, error) {
	interval := l.Per / time.Duration(l.Rate)
	burst := time.Duration(max(l.Burst, 1)-1) * interval
	var line time.Duration
	for try := range rateTries {
		if try > 0 && !sleepUntil(ctx, time.Duration(rand.Int64N(int64(rateBackoff)*int64(try)+1))) {
			return nil, fmt.Errorf("rate limit %s: %w", name, context.Cause(ctx))
		}
		st, props, err := sl.readRate(ctx, name)
		if err != nil {
			return nil, err
		}
		now := time.Now().UTC()
		next := rateState{TAT: latest(st.TAT, now), Tail: st.Tail}
		grants := make([]rateGrant, n)
		for i := range grants {
			due := latest(next.TAT.Add(-burst), now)
			if due.Sub(now) <= reserveHorizon {
				grants[i] = rateGrant{at: due, reserved: true}
				next.TAT = next.TAT.Add(interval)
				continue
			}
			// Refused: the next place in line, back when it is within the horizon.
			next.Tail = latest(next.Tail, next.TAT).Add(interval)
			grants[i] = rateGrant{at: next.Tail.Add(-burst - reserveHorizon)}
		}
		line = max(line, latest(st.Tail, st.TAT).Sub(now))
		data, _ := json.Marshal(next)
		opts := store.PutOptions{ContentType: "application/json", IfMatch: props.ETag, IfNoneMatchAny: props.ETag == ""}
		err = sl.put(ctx, name, data, opts)
		if err == nil {
			return grants, nil
		}
		if !errors.Is(err, store.ErrConflict) {
			return nil, fmt.Errorf("rate limit %s: %w", name, err)
		}
	}
	// Every write lost: come back about when the end of the line seen is within the
	// horizon, spread over the time rateTries starts take.
	grants := make([]rateGrant, n)
	for i := range grants {
		grants[i].at = time.Now().Add(max(line-reserveHorizon, 0) + time.Duration(rand.Int64N(int64(interval)*rateTries+1)))
	}
	return grants, nil
}

// rateGates holds this process's rateGate per store and rate blob.
var rateGates sync.Map

// rateGateKey names a rateGate: the store and container/blob.
type rateGateKey struct {
	s    store.Store
	name string
}

// rateGate batches the admissions of one process to one rate blob: one of them (the
// leader) runs the storage calls for all that are waiting; the others wait for its
// answer, and the first to arrive meanwhile leads the next batch.
type rateGate struct {
	mu    sync.Mutex
	busy  bool
	queue []*rateWaiter
}

// rateWaiter is one admission waiting at a rateGate.
type rateWaiter struct {
	wake  chan struct{}
	lead  bool
	grant rateGrant
	err   error
}

// take waits for this admission's batch and returns its grant. run admits n jobs (the
// first grant is the leader's). A waiter does not watch its context: it waits at most
// for the batch under way, whose storage calls the leader's context bounds.
func (g *rateGate) take(ctx context.Context, run func(ctx context.Context, n int) ([]rateGrant, error)) (rateGrant, error) {
	w := &rateWaiter{wake: make(chan struct{})}
	g.mu.Lock()
	g.queue = append(g.queue, w)
	lead := !g.busy
	g.busy = true
	g.mu.Unlock()
	if !lead {
		<-w.wake
		if !w.lead {
			return w.grant, w.err
		}
	}
	g.mu.Lock()
	batch := g.queue // batch[0] is w
	g.queue = nil
	g.mu.Unlock()
	grants, err := run(ctx, len(batch))
	for i, b := range batch[1:] {
		if err == nil {
			b.grant = grants[i+1]
		}
		b.err = err
		close(b.wake)
	}
	g.mu.Lock()
	if len(g.queue) > 0 {
		g.queue[0].lead = true
		close(g.queue[0].wake)
	} else {
		g.busy = false
	}
	g.mu.Unlock()
	if err != nil {
		return rateGrant{}, err
	}
	return grants[0], nil
}

// readRate reads the rate blob (the zero state when it is missing or damaged).
func (sl *slots) readRate(ctx context.Context, name string) (rateState, store.Properties, error) {
	var st rateState
	data, props, err := sl.s.Get(ctx, sl.container, name, 4096)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return st, props, fmt.Errorf("rate limit %s: %w", name, err)
	default:
		if jerr := json.Unmarshal(data, &st); jerr != nil {
			st = rateState{} // a damaged blob is reset
		}
	}
	return st, props, nil
}

// latest is the later of a and b.
func latest(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// put writes a flow-control blob, making the container when it is missing.
func (sl *slots) put(ctx context.Context, name string, data []byte, opts store.PutOptions) error {
	_, err := sl.s.Put(ctx, sl.container, name, data, opts)
	if errors.Is(err, store.ErrNotFound) {
		if err = sl.s.CreateContainer(ctx, sl.container); err == nil {
			_, err = sl.s.Put(ctx, sl.container, name, data, opts)
		}
	}
	return err
}

// rateWait is how long a job refused by the rate limit waits: until it is told to come
// back (its place in line), plus a random share of a tenth of Wait so that the jobs of
// one interval do not all return in the same instant. The queue keeps whole seconds; no
// floor is added here (a floor applied after the jitter gave every refusal of a round
// the same second).
func (l Limits) rateWait(until time.Duration) time.Duration {
	w := l.Wait
	if w <= 0 {
		w = DefaultLimitWait
	}
	return max(until, 0) + time.Duration(rand.Float64()*float64(w)/10)
}
