package nightshift

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
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

// rateState is the rate blob's content.
type rateState struct {
	TAT time.Time `json:"tat"`
}

// rateBlob is the name of the rate-limit blob of kind and key.
func rateBlob(kind, key string) string {
	return flowPrefix + "rate/" + kind + "/" + keyHash(key) + ".json"
}

// rateTries bounds the conditional writes one admission tries when other processes win
// the blob meanwhile; past it the job waits like a throttled one.
const rateTries = 10

// reserveHorizon is how far ahead a start is reserved: a job whose start is due within
// it sleeps until then, holding its message, instead of going back to the queue.
const reserveHorizon = 2 * time.Second

// takeStart reserves one start of the rate limit. With reserved true, the job may start
// at at; else at is when a start would be within the horizon.
func (sl *slots) takeStart(ctx context.Context, kind, key string, l Limits) (at time.Time, reserved bool, err error) {
	name := rateBlob(kind, key)
	interval := l.Per / time.Duration(l.Rate)
	burst := time.Duration(max(l.Burst, 1)-1) * interval
	for range rateTries {
		var st rateState
		data, props, err := sl.s.Get(ctx, sl.container, name, 4096)
		switch {
		case errors.Is(err, store.ErrNotFound):
		case err != nil:
			return time.Time{}, false, fmt.Errorf("rate limit %s: %w", name, err)
		default:
			if jerr := json.Unmarshal(data, &st); jerr != nil {
				st = rateState{} // a damaged blob is reset
			}
		}
		now := time.Now().UTC()
		tat := st.TAT
		if tat.Before(now) {
			tat = now
		}
		due := tat.Add(-burst)
		if due.Before(now) {
			due = now
		}
		if due.Sub(now) > reserveHorizon {
			return due.Add(-reserveHorizon), false, nil
		}
		next, _ := json.Marshal(rateState{TAT: tat.Add(interval)})
		opts := store.PutOptions{ContentType: "application/json", IfMatch: props.ETag, IfNoneMatchAny: props.ETag == ""}
		err = sl.put(ctx, name, next, opts)
		if err == nil {
			return due, true, nil
		}
		if !errors.Is(err, store.ErrConflict) {
			return time.Time{}, false, fmt.Errorf("rate limit %s: %w", name, err)
		}
	}
	return time.Now().Add(interval), false, nil
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

// rateWait is how long a job refused by the rate limit waits: until a start is within
// the horizon, plus a random share of Wait so that waiting jobs do not all come back at
// once.
func (l Limits) rateWait(until time.Duration) time.Duration {
	w := l.Wait
	if w <= 0 {
		w = DefaultLimitWait
	}
	return max(until+time.Duration(rand.Float64()*float64(w)), time.Second)
}
