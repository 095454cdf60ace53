package schedule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/internal/delayed"
	"github.com/nightshift-jobs/nightshift/record"
	"github.com/nightshift-jobs/nightshift/storage"
)

// EnqueueOptions tune Enqueue. The zero value is fine.
type EnqueueOptions struct {
	// Horizon is the longest delay that goes straight to the queue as an invisible
	// message; longer ones go to the durable schedule. Default (and maximum)
	// delayed.QueueLimit, 7 days. Tests lower it.
	Horizon time.Duration
	// Now returns the current time; default time.Now.
	Now func() time.Time
}

// Enqueue enqueues a job like Client.EnqueueRaw — a job due within the horizon becomes an
// invisible queue message, one due later waits in the durable schedule until the sweeper
// moves it to its queue — with a configurable horizon (Client.EnqueueRaw uses 7 days, the
// queue's limit). Either way the job has a "queued" status at once.
// EnqueueResult.MessageID is empty for a scheduled job.
func Enqueue(ctx context.Context, c *nightshift.Client, kind string, args json.RawMessage, opts *nightshift.EnqueueOptions, sopts *EnqueueOptions) (*nightshift.EnqueueResult, error) {
	so := EnqueueOptions{}
	if sopts != nil {
		so = *sopts
	}
	if so.Horizon <= 0 || so.Horizon > delayed.QueueLimit {
		so.Horizon = delayed.QueueLimit
	}
	if so.Now == nil {
		so.Now = time.Now
	}
	o := nightshift.EnqueueOptions{}
	if opts != nil {
		o = *opts
	}
	now := so.Now().UTC()
	var due time.Time
	switch {
	case o.RunIn != 0 && !o.RunAt.IsZero():
		return nil, fmt.Errorf("schedule: enqueue %s: give run-in or run-at, not both", kind)
	case o.RunIn > 0:
		due = now.Add(o.RunIn)
	case !o.RunAt.IsZero():
		due = o.RunAt.UTC()
	}
	if due.IsZero() || due.Sub(now) <= so.Horizon {
		return c.EnqueueRaw(ctx, kind, args, &o)
	}
	o.RunIn, o.RunAt = 0, time.Time{}
	env, queue, _, err := c.Envelope(kind, args, &o)
	if err != nil {
		return nil, fmt.Errorf("schedule: enqueue %s: %w", kind, err)
	}
	env.RunAt = due
	body, err := env.Encode()
	if err != nil {
		return nil, fmt.Errorf("schedule: enqueue %s: %w", kind, err)
	}
	e, err := delayed.New(c.Store(), &delayed.Options{Now: so.Now}).Put(ctx, env, queue)
	if err != nil {
		return nil, fmt.Errorf("schedule: enqueue %s: %w", kind, err)
	}
	return &nightshift.EnqueueResult{JobID: e.JobID, Kind: e.Kind, Queue: e.Queue, EnqueuedAt: env.EnqueuedAt,
		RunAt: e.Due, Replay: env.Replay, Bytes: len(body)}, nil
}

// Entry is one job waiting in the durable schedule: its id, kind, queue, due time, the
// envelope that goes on the queue and the blob that holds it (`nightshift schedules list`).
type Entry = delayed.Entry

// Scheduled lists the jobs waiting in the durable schedule, soonest first.
func Scheduled(ctx context.Context, store *storage.Clients) ([]*Entry, error) {
	return delayed.New(store, nil).List(ctx, time.Time{})
}

// Cancel cancels a job before it runs: its status becomes cancelled (so the executor
// skips any message of it) and its schedule entry, if any, is removed. It reports whether
// an entry was removed. A job that already ended cannot be cancelled: the error wraps
// nightshift.ErrTerminal.
func Cancel(ctx context.Context, c *nightshift.Client, jobID string) (removed bool, st *record.Status, err error) {
	st, err = c.Cancel(ctx, jobID)
	if err != nil {
		return false, st, err
	}
	removed, err = delayed.New(c.Store(), nil).Remove(ctx, jobID)
	if err != nil {
		return false, st, fmt.Errorf("job %s is cancelled, but its schedule entry could not be removed (the sweeper will drop it): %w", jobID, err)
	}
	return removed, st, nil
}

// Info describes a recurring job for `nightshift schedules`.
type Info struct {
	Name         string        `json:"name"`
	Function     string        `json:"function"`
	Kind         string        `json:"kind"`
	Description  string        `json:"description,omitempty"`
	Schedule     string        `json:"schedule"`
	Setting      string        `json:"setting"`
	Source       string        `json:"source"` // "default" or "setting"
	PastDue      PastDuePolicy `json:"past_due"`
	RunOnStartup bool          `json:"run_on_startup"`
	TimeZone     string        `json:"time_zone"`
	// Next are the next occurrences in TimeZone.
	Next []time.Time `json:"next"`
	// Error is set when the schedule in force does not parse.
	Error string `json:"error,omitempty"`
	// Last is the job of the latest occurrence that has a status.
	Last *LastRun `json:"last,omitempty"`
}

// LastRun is the latest occurrence's job.
type LastRun struct {
	JobID      string       `json:"job_id"`
	Occurrence time.Time    `json:"occurrence"`
	State      record.State `json:"state"`
	Attempt    int          `json:"attempt"`
	FinishedAt time.Time    `json:"finished_at,omitzero"`
	LastError  string       `json:"last_error,omitempty"`
	Trigger    string       `json:"trigger,omitempty"`
}

// Describe returns what `nightshift schedules` shows for each declaration: the schedule
// in force (app setting or default), its next n occurrences after now in loc, and the
// status of the latest occurrence's job (store may be nil to skip that).
func Describe(ctx context.Context, store *storage.Clients, decls []Recurring, getenv func(string) string, loc *time.Location, now time.Time, n int) ([]Info, error) {
	if loc == nil {
		loc = time.UTC
	}
	out := make([]Info, 0, len(decls))
	for _, d := range decls {
		expr, _ := d.EffectiveSchedule(getenv)
		in := Info{Name: d.Name, Function: d.FunctionName(), Kind: d.JobKind(), Description: d.Description, Schedule: expr,
			Setting: d.Setting(), Source: "default", PastDue: d.Policy(), RunOnStartup: d.RunOnStartup, TimeZone: loc.String(), Next: []time.Time{}}
		if expr != d.Schedule {
			in.Source = "setting"
		}
		s, err := d.parsedSchedule(getenv)
		if err != nil {
			in.Error = err.Error()
		} else {
			t := now.In(loc)
			for i := 0; i < n; i++ {
				t = s.Next(t)
				if t.IsZero() {
					break
				}
				in.Next = append(in.Next, t)
			}
		}
		if store != nil {
			last, err := lastRun(ctx, store, d.Name)
			if err != nil {
				return nil, err
			}
			in.Last = last
		}
		out = append(out, in)
	}
	return out, nil
}

// lastRun finds the status of the declaration's latest occurrence job.
func lastRun(ctx context.Context, store *storage.Clients, name string) (*LastRun, error) {
	prefix := JobIDPrefix(name)
	var ids []string
	for it, err := range store.Store().List(ctx, store.Layout.StatusContainer(), prefix) {
		if err != nil {
			if storage.IsNotFound(err) {
				return nil, nil
			}
			return nil, fmt.Errorf("list %s: %w", store.Layout.StatusContainer(), err)
		}
		ids = append(ids, strings.TrimSuffix(it.Name, ".json"))
	}
	type occ struct {
		id string
		t  time.Time
	}
	var occs []occ
	for _, id := range ids {
		if t, ok := OccurrenceOf(name, id); ok {
			occs = append(occs, occ{id, t})
		}
	}
	if len(occs) == 0 {
		return nil, nil
	}
	sort.Slice(occs, func(i, j int) bool { return occs[i].t.Before(occs[j].t) })
	latest := occs[len(occs)-1]
	st, _, err := store.GetStatus(ctx, latest.id)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &LastRun{JobID: st.JobID, Occurrence: latest.t, State: st.State, Attempt: st.Attempt, FinishedAt: st.FinishedAt,
		LastError: st.LastError, Trigger: st.Meta[MetaTrigger]}, nil
}
