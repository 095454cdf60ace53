// Package delayed is nightshift's durable schedule: jobs due further out than a queue
// message can stay invisible (7 days) wait in Blob storage, one blob per job in the
// schedule container, named
//
//	due/<due time, UTC, yyyymmddThhmmssZ>/<job id>.json
//
// so that a listing in name order is a listing in due order and stops at the first entry
// not yet due. The ScheduleSweep timer function calls Sweep every minute; Sweep moves each
// entry due within the look-ahead to its queue, invisible until its due time, and deletes
// the entry only after the enqueue (at least once). Two sweepers never both move an entry:
// each takes a blob lease on it first. A duplicate move after a crash puts the same job id
// on the queue twice, which the executor runs once.
//
// The package only needs storage, so the Go client (package nightshift) can route far
// delays here; package schedule adds listing and cancellation on top.
package delayed

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nightshift-jobs/nightshift/envelope"
	"github.com/nightshift-jobs/nightshift/internal/store"
	"github.com/nightshift-jobs/nightshift/record"
	"github.com/nightshift-jobs/nightshift/storage"
)

// Prefix starts every entry's blob name.
const Prefix = "due/"

// dueLayout formats due times in blob names; it sorts in time order.
const dueLayout = "20060102T150405Z"

// QueueLimit is the longest a queue message can stay invisible (7 days): delays up to it
// go straight to the queue, longer ones to this schedule.
const QueueLimit = 7 * 24 * time.Hour

// DefaultLookahead is how far ahead of its due time Sweep moves an entry (with the rest
// of the wait as the message's invisibility), so jobs start on time, not at the next
// sweep after they are due.
const DefaultLookahead = 2 * time.Minute

// leaseDuration is the lease a sweeper holds on an entry while moving it
// (store.MinLease … store.MaxLease).
const leaseDuration = 60 * time.Second

// ErrJobExists is returned (wrapped) by Put when the job id already has a status record
// or a schedule entry: a job id names one job.
var ErrJobExists = errors.New("job id already used")

// Entry is one scheduled job.
type Entry struct {
	JobID string `json:"job_id"`
	Kind  string `json:"kind"`
	// Queue is the queue the job is moved to when due.
	Queue string `json:"queue"`
	// Due is when the job may run (its envelope's run_at).
	Due time.Time `json:"due"`
	// ScheduledAt is when it was put in the schedule.
	ScheduledAt time.Time `json:"scheduled_at"`
	// Envelope is the message text that goes on the queue.
	Envelope json.RawMessage `json:"envelope"`
	// Blob is the entry's blob name (not stored).
	Blob string `json:"-"`
}

// Options configure a Store. The zero value is fine.
type Options struct {
	// Now returns the current time; default time.Now.
	Now func() time.Time
	// Logger receives what Sweep does; default slog.Default().
	Logger *slog.Logger
}

// Store reads and writes the durable schedule.
type Store struct {
	c   *storage.Clients
	now func() time.Time
	log *slog.Logger
}

// New returns a Store on the given storage clients. opts may be nil.
func New(c *storage.Clients, opts *Options) *Store {
	s := &Store{c: c, now: time.Now, log: slog.Default()}
	if opts != nil && opts.Now != nil {
		s.now = opts.Now
	}
	if opts != nil && opts.Logger != nil {
		s.log = opts.Logger
	}
	return s
}

// BlobName is the blob name of the entry for a job due at due.
func BlobName(due time.Time, jobID string) string {
	return Prefix + due.UTC().Format(dueLayout) + "/" + jobID + ".json"
}

// parseName returns the due time (to the second) and job id encoded in a blob name.
func parseName(name string) (time.Time, string, bool) {
	rest, ok := strings.CutPrefix(name, Prefix)
	if !ok {
		return time.Time{}, "", false
	}
	ts, file, ok := strings.Cut(rest, "/")
	if !ok || !strings.HasSuffix(file, ".json") {
		return time.Time{}, "", false
	}
	due, err := time.Parse(dueLayout, ts)
	if err != nil {
		return time.Time{}, "", false
	}
	return due, strings.TrimSuffix(file, ".json"), true
}

func (s *Store) container() string { return s.c.Layout.ScheduleContainer() }

// Put schedules env (whose RunAt is its due time) for queue. It writes the entry, then
// the job's "queued" status with next_run_at = the due time (create-only), so Status and
// Wait see the job at once. The status is the job id's claim: when it exists already — the
// id was used, or another Put of the same id won a race — Put removes its entry again and
// returns ErrJobExists. A crash between the two writes leaves an entry without a status,
// which still runs.
func (s *Store) Put(ctx context.Context, env *envelope.Envelope, queue string) (*Entry, error) {
	if env.RunAt.IsZero() {
		return nil, fmt.Errorf("schedule job %s: the envelope has no run_at; the durable schedule holds jobs with a due time", env.JobID)
	}
	if env.JobID == "" {
		return nil, fmt.Errorf("schedule job of kind %s: the envelope has no job_id", env.Kind)
	}
	if p := storage.ValidQueueName(queue); p != "" {
		return nil, fmt.Errorf("schedule job %s: queue %q %s", env.JobID, queue, p)
	}
	body, err := env.Encode()
	if err != nil {
		return nil, fmt.Errorf("schedule job %s: %w", env.JobID, err)
	}
	cur, _, err := s.c.GetStatus(ctx, env.JobID)
	switch {
	case err == nil:
		return nil, fmt.Errorf("schedule job %s: its status is %s: %w", env.JobID, cur.State, ErrJobExists)
	case !errors.Is(err, storage.ErrNotFound):
		return nil, fmt.Errorf("schedule job %s: %w", env.JobID, err)
	}
	e := &Entry{JobID: env.JobID, Kind: env.Kind, Queue: queue, Due: env.RunAt.UTC(), ScheduledAt: s.now().UTC(), Envelope: body}
	e.Blob = BlobName(e.Due, e.JobID)
	data, err := json.Marshal(e)
	if err != nil {
		return nil, err
	}
	_, err = s.c.Store().Put(ctx, s.container(), e.Blob, data, store.PutOptions{ContentType: "application/json", IfNoneMatchAny: true})
	if err != nil {
		if storage.IsConflict(err) {
			return nil, fmt.Errorf("schedule job %s: already scheduled for %s: %w", env.JobID, e.Due.Format(time.RFC3339), ErrJobExists)
		}
		return nil, fmt.Errorf("schedule job %s: write %s/%s: %w", env.JobID, s.container(), e.Blob, err)
	}
	if _, err := s.c.PutStatus(ctx, record.Queued(env, queue, e.Due).Apply(nil), ""); err != nil {
		if storage.IsConflict(err) {
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			if derr := s.c.Store().Delete(dctx, s.container(), e.Blob, store.DeleteOptions{}); derr != nil && !storage.IsNotFound(derr) {
				return nil, fmt.Errorf("schedule job %s: the id was taken meanwhile, and removing the entry %s failed: %w", env.JobID, e.Blob, derr)
			}
			return nil, fmt.Errorf("schedule job %s: the id was taken meanwhile: %w", env.JobID, ErrJobExists)
		}
		return e, fmt.Errorf("job %s is scheduled (%s) but its queued status could not be written: %w", env.JobID, e.Blob, err)
	}
	return e, nil
}

// List returns the entries due at or before until (every entry when until is zero), in
// due order.
func (s *Store) List(ctx context.Context, until time.Time) ([]*Entry, error) {
	names, err := s.names(ctx, until)
	if err != nil {
		return nil, err
	}
	out := make([]*Entry, 0, len(names))
	for _, n := range names {
		e, err := s.read(ctx, n)
		if errors.Is(err, storage.ErrNotFound) {
			continue // moved or cancelled meanwhile
		}
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// names lists entry blob names due at or before until (all when zero), in due order.
func (s *Store) names(ctx context.Context, until time.Time) ([]string, error) {
	var out []string
	for it, err := range s.c.Store().List(ctx, s.container(), Prefix) {
		if err != nil {
			if storage.IsNotFound(err) {
				return nil, nil // no container yet: nothing scheduled
			}
			return nil, fmt.Errorf("list %s: %w", s.container(), err)
		}
		due, _, ok := parseName(it.Name)
		if !ok {
			continue
		}
		if !until.IsZero() && due.After(until) {
			return out, nil
		}
		out = append(out, it.Name)
	}
	return out, nil
}

func (s *Store) read(ctx context.Context, name string) (*Entry, error) {
	data, _, err := s.c.Store().Get(ctx, s.container(), name, 0)
	if err != nil {
		if storage.IsNotFound(err) {
			return nil, fmt.Errorf("%s/%s: %w", s.container(), name, storage.ErrNotFound)
		}
		return nil, fmt.Errorf("read %s/%s: %w", s.container(), name, err)
	}
	var e Entry
	if err := json.Unmarshal(data, &e); err != nil {
		return nil, fmt.Errorf("%s/%s is not a schedule entry: %w", s.container(), name, err)
	}
	e.Blob = name
	return &e, nil
}

// Find returns the entry of a job, or nil when the job is not in the schedule.
func (s *Store) Find(ctx context.Context, jobID string) (*Entry, error) {
	names, err := s.names(ctx, time.Time{})
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		if _, id, _ := parseName(n); id == jobID {
			e, err := s.read(ctx, n)
			if errors.Is(err, storage.ErrNotFound) {
				return nil, nil
			}
			return e, err
		}
	}
	return nil, nil
}

// Remove deletes a job's entry so it is never moved to its queue. It reports whether
// there was one. An entry that a sweeper is moving right now (leased) cannot be removed:
// the error says so; mark the job cancelled as well (package schedule's Cancel does both)
// so the executor skips it.
func (s *Store) Remove(ctx context.Context, jobID string) (bool, error) {
	e, err := s.Find(ctx, jobID)
	if err != nil || e == nil {
		return false, err
	}
	err = s.c.Store().Delete(ctx, s.container(), e.Blob, store.DeleteOptions{})
	switch {
	case err == nil:
		return true, nil
	case storage.IsNotFound(err):
		return false, nil
	default:
		return false, fmt.Errorf("remove job %s from the schedule (%s): %w", jobID, e.Blob, err)
	}
}

// SweepResult counts what one Sweep did.
type SweepResult struct {
	// Moved entries went to their queue.
	Moved int `json:"moved"`
	// Dropped entries belonged to jobs already cancelled (or otherwise ended).
	Dropped int `json:"dropped"`
	// Busy entries were being moved by another sweeper (leased) or vanished meanwhile.
	Busy int `json:"busy"`
	// Failed entries could not be moved; they stay and are tried at the next sweep.
	Failed int `json:"failed"`
	// JobIDs lists the moved jobs.
	JobIDs []string `json:"job_ids,omitempty"`
}

// Sweep moves every entry due within lookahead of now (DefaultLookahead when
// lookahead <= 0) to its queue, invisible until its due time, and deletes it. It returns
// an error when an entry could not be moved (after trying the others).
func (s *Store) Sweep(ctx context.Context, lookahead time.Duration) (SweepResult, error) {
	if lookahead <= 0 {
		lookahead = DefaultLookahead
	}
	var res SweepResult
	names, err := s.names(ctx, s.now().Add(lookahead))
	if err != nil {
		return res, err
	}
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
		sem  = make(chan struct{}, sweepConcurrency)
	)
	for _, n := range names {
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			outcome, id, err := s.move(ctx, n)
			mu.Lock()
			defer mu.Unlock()
			switch outcome {
			case moved:
				res.Moved++
				res.JobIDs = append(res.JobIDs, id)
			case dropped:
				res.Dropped++
			case busy:
				res.Busy++
			case failed:
				res.Failed++
				errs = append(errs, err)
			}
		}()
	}
	wg.Wait()
	sort.Strings(res.JobIDs)
	if len(errs) > 5 {
		errs = append(errs[:5], fmt.Errorf("and %d more entries failed", len(errs)-5))
	}
	return res, errors.Join(errs...)
}

// sweepConcurrency bounds the entries one sweep moves at once.
const sweepConcurrency = 8

type moveOutcome int

const (
	moved moveOutcome = iota
	dropped
	busy
	failed
)

// move moves one entry under a lease: enqueue, then delete.
func (s *Store) move(ctx context.Context, name string) (moveOutcome, string, error) {
	bs := s.c.Store()
	leaseID, err := bs.AcquireLease(ctx, s.container(), name, leaseDuration)
	if err != nil {
		if storage.IsNotFound(err) || storage.IsConflict(err) {
			return busy, "", nil // moved already, or another sweeper holds it
		}
		return failed, "", fmt.Errorf("lease %s/%s: %w", s.container(), name, err)
	}
	leased := store.DeleteOptions{LeaseID: leaseID}
	release := func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_ = bs.ReleaseLease(rctx, s.container(), name, leaseID)
	}
	e, err := s.read(ctx, name)
	if err != nil {
		release()
		if errors.Is(err, storage.ErrNotFound) {
			return busy, "", nil
		}
		return failed, "", err
	}
	log := s.log.With("job_id", e.JobID, "kind", e.Kind, "due", e.Due, "queue", e.Queue)
	st, _, err := s.c.GetStatus(ctx, e.JobID)
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		release()
		return failed, e.JobID, err
	}
	if st != nil && st.State.Terminal() {
		// Cancelled (or ended some other way) while it waited: never enqueue it.
		if err := bs.Delete(ctx, s.container(), name, leased); err != nil && !storage.IsNotFound(err) {
			release()
			return failed, e.JobID, fmt.Errorf("drop entry %s of %s job %s: %w", name, st.State, e.JobID, err)
		}
		log.Info("scheduled job dropped", "outcome", "dropped", "state", st.State)
		return dropped, e.JobID, nil
	}
	now := s.now()
	delay := max(e.Due.Sub(now), 0)
	// The message must outlive its invisibility: it lives 7 days after it is due.
	if _, err := s.c.Enqueue(ctx, e.Queue, e.Envelope, delay, delay+QueueLimit); err != nil {
		release()
		return failed, e.JobID, fmt.Errorf("move scheduled job %s to %s: %w", e.JobID, e.Queue, err)
	}
	if err := bs.Delete(ctx, s.container(), name, leased); err != nil && !storage.IsNotFound(err) {
		// Enqueued but still in the schedule: the next sweep enqueues it again (same job
		// id, run once). Report it, keep going.
		log.Warn("scheduled job moved but its entry could not be deleted", "error", err.Error())
		release()
	}
	log.Info("scheduled job moved to its queue", "outcome", "moved", "delay_ms", delay.Milliseconds())
	return moved, e.JobID, nil
}
