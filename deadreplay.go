package nightshift

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nightshift-jobs/nightshift/record"
)

// DefaultReplayRate is the rate cap of ReplayDead when ReplayDeadOptions.Rate is 0:
// replays per second.
const DefaultReplayRate = 10.0

// ErrBadContinuation is returned (wrapped) by ReplayDead when ReplayDeadOptions.After is
// not a continuation a report gave.
var ErrBadContinuation = errors.New("not a continuation of a dead-letter replay")

// DeadSelection says which dead letters ReplayDead takes: the records named by DeadIDs,
// or every record that all the set filters match (the zero value matches every record).
type DeadSelection struct {
	// DeadIDs, when set, are the records to replay, in this order; the filters must then
	// be empty. A named record that cannot be replayed is a failure, not a skip.
	DeadIDs []string
	// Kind, Reason and Cause match the record's fields exactly. Cause record.CauseCrash
	// selects the dead letters crashes caused (docs/semantics.md#cause-crash-or-job); records
	// older than causes have none and match no cause.
	Kind   string
	Reason record.DeadReason
	Cause  record.DeadCause
	// Since, when set, selects deaths at or after it.
	Since time.Time
	// Scan lists and reads every dead-letter record instead of asking the index (for
	// records written before it; or run ReindexDeadLetters once).
	Scan bool
}

// filtered reports whether the selection has a filter set.
func (s *DeadSelection) filtered() bool {
	return s.Kind != "" || s.Reason != "" || s.Cause != "" || !s.Since.IsZero()
}

// Matches reports whether the filters select d (DeadIDs is not consulted).
func (s *DeadSelection) Matches(d *record.DeadLetter) bool {
	return (s.Kind == "" || d.Kind == s.Kind) && (s.Reason == "" || d.Reason == s.Reason) &&
		(s.Cause == "" || d.Cause == s.Cause) && (s.Since.IsZero() || !d.DiedAt.Before(s.Since))
}

// ReplayDeadOptions tune ReplayDead. The zero value replays every selected record at
// DefaultReplayRate.
type ReplayDeadOptions struct {
	// Rate caps replays per second (records skipped or only checked do not wait); 0 means
	// DefaultReplayRate, a negative rate means no cap.
	Rate float64
	// Limit, when above 0, bounds the records a call takes from a filtered selection
	// (replayed, skipped or failed); the report's Next then continues with the rest.
	Limit int
	// After continues a filtered selection after the records an earlier call took: the
	// Next of its report, with the same selection.
	After string
	// DryRun checks each record and reports the life it would start, replaying nothing.
	DryRun bool
	// Progress, when set, is called after each record with the counts so far.
	Progress func(DeadReplayProgress)

	// sleep replaces the rate cap's waiting (tests count the waits asked for).
	sleep func(ctx context.Context, d time.Duration) error
}

// DeadReplayOutcome is what ReplayDead did with one record.
type DeadReplayOutcome struct {
	DeadID string `json:"dead_id"`
	JobID  string `json:"job_id,omitempty"`
	Kind   string `json:"kind,omitempty"`
	// Replay is the life the replay started (or, in a dry run, would start).
	Replay int  `json:"replay,omitempty"`
	DryRun bool `json:"dry_run,omitempty"`
	// Skipped says why a record a filter selected was left alone: it is not replayable
	// (not a valid envelope), or its job is no longer dead (an earlier replay is pending,
	// running or succeeded, or it was cancelled), so a group replay run twice runs no job
	// twice. Error is a failed replay, or a named record that could not be replayed.
	Skipped string `json:"skipped,omitempty"`
	Error   string `json:"error,omitempty"`
}

// DeadReplayProgress is the running count of a group replay.
type DeadReplayProgress struct {
	// Done of Total records taken so far (Total is what this call takes).
	Done, Total               int
	Replayed, Skipped, Failed int
	// Last is the outcome of the record just taken.
	Last DeadReplayOutcome
}

// DeadReplayReport is the result of ReplayDead.
type DeadReplayReport struct {
	// Matched is how many records the selection matched from where this call started
	// (after the continuation); Taken of them were taken, Remaining are left for Next.
	Matched   int `json:"matched"`
	Taken     int `json:"taken"`
	Remaining int `json:"remaining"`
	Replayed  int `json:"replayed"`
	Skipped   int `json:"skipped"`
	Failed    int `json:"failed"`
	// Outcomes has one entry per record taken, in the order taken.
	Outcomes []DeadReplayOutcome `json:"outcomes"`
	// Next, when records remain, continues the selection (ReplayDeadOptions.After).
	Next string `json:"next,omitempty"`
}

// ReplayDead replays a group of dead letters — by id, or every record a filter selects,
// oldest death first — at most opts.Rate replays per second (DefaultReplayRate unless
// set), each as Replay does: a new life of the job. Records that cannot or need not be
// replayed are skipped (filters) or failed (ids), never replayed twice: a job that is no
// longer dead is left alone. With opts.Limit a call takes at most that many records and
// the report's Next continues with the rest, so a caller with a deadline (an HTTP request)
// goes through a large selection in bounded steps.
//
// The error is a storage failure (listing, reading a status), a cancelled context or a
// bad selection or continuation (ErrBadContinuation); the report then holds what was done
// before it. A failed replay of one record is counted in the report, not returned.
func (c *Client) ReplayDead(ctx context.Context, sel DeadSelection, opts *ReplayDeadOptions) (*DeadReplayReport, error) {
	o := ReplayDeadOptions{}
	if opts != nil {
		o = *opts
	}
	rep := &DeadReplayReport{Outcomes: []DeadReplayOutcome{}}
	targets, err := c.deadTargets(ctx, &sel, &o, rep)
	if err != nil {
		return rep, err
	}
	r := &groupReplay{c: c, byID: len(sel.DeadIDs) > 0, dryRun: o.DryRun, pace: c.newPacer(&o), rep: rep}
	for i, d := range targets {
		out, err := r.one(ctx, d)
		if err != nil {
			return rep, err
		}
		rep.Outcomes = append(rep.Outcomes, out)
		rep.Taken++
		if o.Progress != nil {
			o.Progress(DeadReplayProgress{Done: i + 1, Total: len(targets), Replayed: rep.Replayed, Skipped: rep.Skipped, Failed: rep.Failed, Last: out})
		}
	}
	return rep, nil
}

// deadTargets loads the records of the selection: those named, or those the filters
// select after the continuation, oldest death first (replay in the order things broke),
// at most o.Limit of them. It sets the report's Matched, Remaining and Next.
func (c *Client) deadTargets(ctx context.Context, sel *DeadSelection, o *ReplayDeadOptions, rep *DeadReplayReport) ([]*record.DeadLetter, error) {
	if len(sel.DeadIDs) > 0 {
		if sel.filtered() || o.After != "" {
			return nil, errors.New("nightshift: replay dead: give dead ids or filters (and a continuation), not both")
		}
		var out []*record.DeadLetter
		for _, id := range sel.DeadIDs {
			d, _, err := c.store.GetDeadLetter(ctx, id)
			if err != nil {
				return nil, fmt.Errorf("nightshift: replay dead: dead letter %s: %w", id, err)
			}
			out = append(out, d)
		}
		rep.Matched = len(out)
		return out, nil
	}
	after, err := decodeContinuation(o.After)
	if err != nil {
		return nil, err
	}
	all, err := c.FindDeadLetters(ctx, *sel)
	if err != nil {
		return nil, err
	}
	var out []*record.DeadLetter
	for _, d := range all {
		if after == nil || deadOrder(d, after) > 0 {
			out = append(out, d)
		}
	}
	slices.SortStableFunc(out, func(a, b *record.DeadLetter) int { return deadOrder(a, &deadPos{DiedAt: b.DiedAt, DeadID: b.DeadID}) })
	rep.Matched = len(out)
	if o.Limit > 0 && len(out) > o.Limit {
		out = out[:o.Limit]
		last := out[len(out)-1]
		rep.Next = encodeContinuation(&deadPos{DiedAt: last.DiedAt, DeadID: last.DeadID})
	}
	rep.Remaining = rep.Matched - len(out)
	return out, nil
}

// deadPos is a place in the replay order: (time of death, dead id).
type deadPos struct {
	DiedAt time.Time `json:"t"`
	DeadID string    `json:"id"`
}

// deadOrder compares d's place in the replay order with p's.
func deadOrder(d *record.DeadLetter, p *deadPos) int {
	if c := d.DiedAt.Compare(p.DiedAt); c != 0 {
		return c
	}
	return cmp.Compare(d.DeadID, p.DeadID)
}

// continuationPrefix versions the continuation format.
const continuationPrefix = "dr1."

func encodeContinuation(p *deadPos) string {
	b, _ := json.Marshal(p)
	return continuationPrefix + base64.RawURLEncoding.EncodeToString(b)
}

// decodeContinuation reads a continuation (nil for ""). It holds a place in the order
// only, never a selection: a caller who edits it moves within what its filters select.
func decodeContinuation(s string) (*deadPos, error) {
	if s == "" {
		return nil, nil
	}
	raw, ok := strings.CutPrefix(s, continuationPrefix)
	if !ok || len(s) > 1024 {
		return nil, fmt.Errorf("nightshift: replay dead: %w", ErrBadContinuation)
	}
	b, err := base64.RawURLEncoding.DecodeString(raw)
	if err != nil {
		return nil, fmt.Errorf("nightshift: replay dead: %w", ErrBadContinuation)
	}
	var p deadPos
	if err := json.Unmarshal(b, &p); err != nil || p.DiedAt.IsZero() || p.DeadID == "" {
		return nil, fmt.Errorf("nightshift: replay dead: %w", ErrBadContinuation)
	}
	return &p, nil
}

// groupReplay replays the records of one ReplayDead call and counts the outcomes.
type groupReplay struct {
	c            *Client
	byID, dryRun bool
	pace         *pacer
	rep          *DeadReplayReport
}

// problem records why a record was not replayed: an error for a record named by id, a
// skip for one a filter selected but that cannot (or need not) be replayed.
func (r *groupReplay) problem(o *DeadReplayOutcome, msg string) {
	if r.byID {
		o.Error = msg
		r.rep.Failed++
	} else {
		o.Skipped = msg
		r.rep.Skipped++
	}
}

// one replays (or, in a dry run, only checks) one dead letter.
func (r *groupReplay) one(ctx context.Context, d *record.DeadLetter) (DeadReplayOutcome, error) {
	o := DeadReplayOutcome{DeadID: d.DeadID, JobID: d.JobID, Kind: d.Kind, DryRun: r.dryRun}
	if d.Envelope == nil {
		r.problem(&o, fmt.Sprintf("not replayable: the message was not a valid job envelope (%s)", d.Reason))
		return o, nil
	}
	st, err := r.c.Status(ctx, d.JobID)
	switch {
	case err == nil && st.State != record.StateDead:
		r.problem(&o, fmt.Sprintf("job is %s (life %d), not dead: already replayed or cancelled", st.State, st.Replay))
		return o, nil
	case err != nil && !errors.Is(err, ErrNotFound):
		return o, err
	case r.dryRun:
		o.Replay = max(d.Replays+1, d.Envelope.Replay+1)
		if err == nil {
			o.Replay = max(o.Replay, st.Replay+1)
		}
		return o, nil
	}
	if err := r.pace.wait(ctx); err != nil {
		return o, err
	}
	res, err := r.c.Replay(ctx, d.DeadID)
	switch {
	case err == nil:
		o.Replay = res.Replay
		r.rep.Replayed++
	case errors.Is(err, ErrNotDead):
		r.problem(&o, err.Error())
	default:
		o.Error = err.Error()
		r.rep.Failed++
	}
	return o, nil
}

// pacer spaces calls at most rate per second: call i waits until start + i/rate. The
// first call goes at once; a rate of 0 or less never waits.
type pacer struct {
	rate  float64
	now   func() time.Time
	sleep func(ctx context.Context, d time.Duration) error
	start time.Time
	n     int
}

// newPacer returns the rate cap of a ReplayDead call, on the client's clock.
func (c *Client) newPacer(o *ReplayDeadOptions) *pacer {
	rate := o.Rate
	if rate == 0 {
		rate = DefaultReplayRate
	}
	sleep := o.sleep
	if sleep == nil {
		sleep = sleepCtx
	}
	return &pacer{rate: rate, now: c.opts.Now, sleep: sleep}
}

func (p *pacer) wait(ctx context.Context) error {
	if p.rate <= 0 {
		return ctx.Err()
	}
	now := p.now()
	if p.n == 0 {
		p.start = now
	}
	due := p.start.Add(time.Duration(float64(p.n) / p.rate * float64(time.Second)))
	p.n++
	if d := due.Sub(now); d > 0 {
		return p.sleep(ctx, d)
	}
	return ctx.Err()
}

// sleepCtx waits d, or until ctx is done.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
