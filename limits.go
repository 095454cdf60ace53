package nightshift

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/nightshift-jobs/nightshift/internal/store"
)

// Limits are a kind's flow-control limits, held across every instance and worker that
// shares the storage account (docs/flow-control.md). The zero value limits nothing. As
// JSON it is spelled as in SettingLimits.
type Limits struct {
	// Concurrency is how many jobs of the kind (of one key, with KeyArg) may run at once
	// across the fleet; 0 for no limit. Each running job holds one of Concurrency slot
	// blobs by a blob lease it renews while it runs.
	Concurrency int
	// KeyArg names a top-level field of the job's args whose value partitions the limit
	// ("customer_id": Concurrency per customer). A job whose args lack the field shares
	// the partition of the empty key. Empty: one limit for the whole kind.
	KeyArg string
	// SlotLease is the lease duration of a held slot (store.MinLease … store.MaxLease,
	// default DefaultSlotLease). It is renewed every third of it while the job runs, so a
	// process that dies frees its slots at most SlotLease after it died.
	SlotLease time.Duration
	// Wait is how long a job that found no free slot waits before it tries again (its
	// message goes back on its queue, invisible for Wait ±50 %, not an attempt). Default
	// DefaultLimitWait.
	Wait time.Duration
	// Rate is how many jobs of the kind (of one key, with KeyArg) may start per Per across
	// the fleet; 0 for no limit (ratelimit.go). A job over the limit waits like one that
	// found no slot: not an attempt.
	Rate int
	// Per is the rate's interval (default one second).
	Per time.Duration
	// Burst is how many starts may come at once after a quiet spell (default 1: starts
	// are spread at least Per/Rate apart).
	Burst int
}

// Defaults for Limits.
const (
	DefaultSlotLease = store.MinLease
	DefaultLimitWait = 5 * time.Second
)

// check reports a limit the storage cannot hold.
func (l Limits) check() error {
	if l.Concurrency < 0 {
		return fmt.Errorf("concurrency %d is negative", l.Concurrency)
	}
	if l.Concurrency > maxSlots {
		return fmt.Errorf("concurrency %d is more than %d slots", l.Concurrency, maxSlots)
	}
	if l.SlotLease != 0 && store.CheckLease(l.SlotLease) != nil {
		return fmt.Errorf("slot lease %s is outside %s … %s", l.SlotLease, store.MinLease, store.MaxLease)
	}
	if l.Rate < 0 || l.Per < 0 || l.Burst < 0 || (l.Rate > 0 && l.Per > 0 && l.Per/time.Duration(l.Rate) < time.Millisecond) {
		return fmt.Errorf("rate %d per %s (burst %d) is not a rate of at most 1000 per second", l.Rate, l.Per, l.Burst)
	}
	if l.Wait < 0 || l.Wait > MaxDelay {
		return fmt.Errorf("wait %s is outside 0 … %s", l.Wait, MaxDelay)
	}
	return nil
}

// maxSlots bounds Concurrency: a full limit costs one lease attempt per slot.
const maxSlots = 1000

func (l Limits) slotLease() time.Duration {
	if l.SlotLease <= 0 {
		return DefaultSlotLease
	}
	return l.SlotLease
}

// waitDelay is Wait with ±50 % jitter, at least one second (the queue's precision).
func (l Limits) waitDelay() time.Duration {
	w := l.Wait
	if w <= 0 {
		w = DefaultLimitWait
	}
	d := time.Duration(float64(w) * (0.5 + rand.Float64()))
	return max(d, time.Second)
}

// limitKey is the partition of a job's args under keyArg: the field's string value, or
// the JSON text of any other value; "" when there is no key or the args are not an object.
func limitKey(args []byte, keyArg string) string {
	if keyArg == "" || len(args) == 0 {
		return ""
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(args, &obj) != nil {
		return ""
	}
	raw, ok := obj[keyArg]
	if !ok {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var buf bytes.Buffer
	if json.Compact(&buf, raw) != nil {
		return string(raw)
	}
	return buf.String()
}

// flowPrefix is where flow-control blobs live in the unique container (whose own locks
// are <sha256>.json at its root, so the two never meet).
const flowPrefix = "flow/"

// slotBlob is the name of one concurrency slot of kind and key.
func slotBlob(kind, key string, i int) string {
	return flowPrefix + "slots/" + kind + "/" + keyHash(key) + "/" + strconv.Itoa(i)
}

// keyHash names a limit key in blob names (any text, of any length).
func keyHash(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:12])
}

// withDefaults fills in Per.
func (l Limits) withDefaults() Limits {
	if l.Rate > 0 && l.Per <= 0 {
		l.Per = time.Second
	}
	return l
}

// slots acquires and releases concurrency slots: blob leases on slot blobs.
type slots struct {
	s         store.Store
	container string
	log       *slog.Logger
}

// heldSlot is a slot a running job holds; release ends it.
type heldSlot struct {
	sl    *slots
	name  string
	lease string
	stop  chan struct{}
	done  chan struct{}
	once  sync.Once
}

// acquire takes a free slot of n (nil when every one is held by someone else), starting
// at a random one so that concurrent takers spread out. It creates a slot blob the first
// time it is needed.
func (sl *slots) acquire(ctx context.Context, kind, key string, n int, lease time.Duration) (*heldSlot, error) {
	start := rand.IntN(n)
	for i := range n {
		name := slotBlob(kind, key, (start+i)%n)
		id, err := sl.s.AcquireLease(ctx, sl.container, name, lease)
		if errors.Is(err, store.ErrNotFound) {
			if err = sl.create(ctx, name); err == nil {
				id, err = sl.s.AcquireLease(ctx, sl.container, name, lease)
			}
		}
		switch {
		case err == nil:
			h := &heldSlot{sl: sl, name: name, lease: id, stop: make(chan struct{}), done: make(chan struct{})}
			go h.renew(lease / 3)
			return h, nil
		case errors.Is(err, store.ErrConflict):
			continue
		default:
			return nil, fmt.Errorf("concurrency slot %s: %w", name, err)
		}
	}
	return nil, nil
}

// create makes an empty slot blob (and the container when it is missing).
func (sl *slots) create(ctx context.Context, name string) error {
	_, err := sl.s.Put(ctx, sl.container, name, nil, store.PutOptions{IfNoneMatchAny: true})
	if errors.Is(err, store.ErrNotFound) {
		if err = sl.s.CreateContainer(ctx, sl.container); err == nil {
			_, err = sl.s.Put(ctx, sl.container, name, nil, store.PutOptions{IfNoneMatchAny: true})
		}
	}
	if err != nil && !errors.Is(err, store.ErrConflict) {
		return err
	}
	return nil
}

// renew keeps the lease until release. A failed renewal is logged and tried again at the
// next tick; once the lease has expired and another job took the slot, the limit is
// exceeded by one until this job ends (docs/flow-control.md).
func (h *heldSlot) renew(every time.Duration) {
	defer close(h.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-h.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), every)
			err := h.sl.s.RenewLease(ctx, h.sl.container, h.name, h.lease)
			cancel()
			if err != nil {
				h.sl.log.Warn("could not renew a concurrency slot's lease", "slot", h.name, "error", err.Error())
			}
		}
	}
}

// release stops renewing and ends the lease at once; it runs once. A failed release is
// logged: the lease then expires by itself.
func (h *heldSlot) release() {
	h.once.Do(func() {
		close(h.stop)
		<-h.done
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := h.sl.s.ReleaseLease(ctx, h.sl.container, h.name, h.lease); err != nil {
			h.sl.log.Warn("could not release a concurrency slot; its lease expires by itself", "slot", h.name, "error", err.Error())
		}
	})
}

// abandon stops renewing without releasing: what a process that dies leaves behind (tests).
func (h *heldSlot) abandon() {
	h.once.Do(func() {
		close(h.stop)
		<-h.done
	})
}
