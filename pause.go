package nightshift

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/nightshift-jobs/nightshift/internal/store"
	"github.com/nightshift-jobs/nightshift/storage"
)

// Pauses are kept in one small blob, <unique container>/flow/paused.json, changed with
// conditional writes (Client.Pause, Client.Resume). Each handler reads it at most once per
// PauseCheck and answers from that copy in between, so pausing costs no storage call per
// job and takes effect within PauseCheck (docs/flow-control.md).

// PauseCheck is how long a handler answers "paused?" from its cached copy of the pauses:
// a pause or resume reaches every instance and worker within it.
const PauseCheck = 5 * time.Second

// pauseWait is how long a paused job waits on its queue before it looks again (±50 %).
const pauseWait = 10 * time.Second

// pausedBlob names the pauses record in the unique container.
const pausedBlob = flowPrefix + "paused.json"

// Paused is the pauses record: what is paused, since when.
type Paused struct {
	// Queues are paused queues (full names, as the layout spells them) and when each was
	// paused.
	Queues map[string]time.Time `json:"queues,omitempty"`
	// Kinds are paused kinds and when each was paused.
	Kinds map[string]time.Time `json:"kinds,omitempty"`
}

// PauseTarget names what to pause or resume: a queue (a full name such as
// Layout.JobsQueue()) or a kind. Exactly one is set.
type PauseTarget struct {
	Queue string `json:"queue,omitempty"`
	Kind  string `json:"kind,omitempty"`
}

func (t PauseTarget) check() error {
	if (t.Queue == "") == (t.Kind == "") {
		return fmt.Errorf("nightshift: pause: name exactly one of a queue or a kind")
	}
	return nil
}

// Pause pauses a queue or a kind across the fleet: its jobs stay on their queues, are not
// attempts and do not run until Resume (within PauseCheck of the call). Recurring jobs of
// a paused kind are enqueued at their times and held the same way. Pausing what is paused
// keeps its first time.
func (c *Client) Pause(ctx context.Context, t PauseTarget) error {
	if err := t.check(); err != nil {
		return err
	}
	return c.changePauses(ctx, func(p *Paused) {
		now := time.Now().UTC()
		if t.Queue != "" {
			if _, ok := p.Queues[t.Queue]; !ok {
				p.Queues[t.Queue] = now
			}
		} else if _, ok := p.Kinds[t.Kind]; !ok {
			p.Kinds[t.Kind] = now
		}
	})
}

// Resume undoes Pause: the held jobs run as their messages come back (within PauseCheck
// plus their wait, at most 15 s), on the attempt they were on.
func (c *Client) Resume(ctx context.Context, t PauseTarget) error {
	if err := t.check(); err != nil {
		return err
	}
	return c.changePauses(ctx, func(p *Paused) {
		delete(p.Queues, t.Queue)
		delete(p.Kinds, t.Kind)
	})
}

// Pauses returns what is paused.
func (c *Client) Pauses(ctx context.Context) (*Paused, error) {
	p, _, err := readPauses(ctx, c.store)
	if err != nil {
		return nil, fmt.Errorf("nightshift: pauses: %w", err)
	}
	return p, nil
}

func (c *Client) changePauses(ctx context.Context, change func(p *Paused)) error {
	sl := &slots{s: c.store.Store(), container: c.store.Layout.UniqueContainer()}
	for range 20 {
		p, etag, err := readPauses(ctx, c.store)
		if err != nil {
			return fmt.Errorf("nightshift: pauses: %w", err)
		}
		change(p)
		data, err := json.Marshal(p)
		if err != nil {
			return err
		}
		err = sl.put(ctx, pausedBlob, data, store.PutOptions{ContentType: "application/json", IfMatch: etag, IfNoneMatchAny: etag == ""})
		if err == nil {
			return nil
		}
		if !errors.Is(err, store.ErrConflict) {
			return fmt.Errorf("nightshift: pauses: %w", err)
		}
	}
	return fmt.Errorf("nightshift: pauses: too many concurrent writers")
}

// readPauses reads the pauses record (empty when there is none).
func readPauses(ctx context.Context, c *storage.Clients) (*Paused, store.ETag, error) {
	p := &Paused{}
	data, props, err := c.Store().Get(ctx, c.Layout.UniqueContainer(), pausedBlob, 1<<20)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return nil, "", err
	default:
		if err := json.Unmarshal(data, p); err != nil {
			return nil, "", fmt.Errorf("%s: %w", pausedBlob, err)
		}
	}
	if p.Queues == nil {
		p.Queues = map[string]time.Time{}
	}
	if p.Kinds == nil {
		p.Kinds = map[string]time.Time{}
	}
	return p, props.ETag, nil
}

// Names lists what is paused, queues then kinds, each sorted.
func (p *Paused) Names() (queues, kinds []string) {
	return slices.Sorted(maps.Keys(p.Queues)), slices.Sorted(maps.Keys(p.Kinds))
}

// pauses is the pause feature: its admit hook holds a job of a paused queue or kind on
// its queue (not an attempt), from a copy of the pauses record read at most once per
// PauseCheck. It runs first, so that a paused job costs no other storage call.
type pauses struct {
	x     *executor
	mu    sync.Mutex
	cur   *Paused
	read  time.Time
	check time.Duration
}

func (f *pauses) admit(ctx context.Context, a *attempt) (outcome, bool) {
	p, err := f.get(ctx)
	if err != nil {
		return infraFailure(err), false
	}
	why := ""
	if _, ok := p.Queues[a.d.Queue]; ok {
		why = "queue " + a.d.Queue + " is paused"
	} else if _, ok := p.Kinds[a.env.Kind]; ok {
		why = "kind " + a.env.Kind + " is paused"
	}
	if why == "" {
		return outcome{}, true
	}
	return f.x.waitForLimit(ctx, a, why, time.Duration(float64(pauseWait)*(0.5+rand.Float64())))
}

func (*pauses) ended(context.Context, jobEnd) error { return nil }

// get returns the cached pauses, reading them again when the copy is older than the
// check interval. When the read fails, a copy is kept (and used) for one more interval
// before the failure fails the invocation.
func (f *pauses) get(ctx context.Context) (*Paused, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cur != nil && time.Since(f.read) < f.check {
		return f.cur, nil
	}
	if f.x.ext == nil || f.x.ext.Store() == nil {
		f.cur, f.read = &Paused{}, time.Now()
		return f.cur, nil
	}
	p, _, err := readPauses(ctx, f.x.ext)
	if err != nil {
		if f.cur != nil && time.Since(f.read) < 2*f.check {
			return f.cur, nil
		}
		return nil, fmt.Errorf("reading the pauses: %w", err)
	}
	f.cur, f.read = p, time.Now()
	return p, nil
}
