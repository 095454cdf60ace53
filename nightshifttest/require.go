package nightshifttest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"reflect"
	"slices"
	"strings"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/internal/store"
	"github.com/nightshift-jobs/nightshift/record"
)

// TB is the part of testing.TB the Require helpers use: a *testing.T or *testing.B
// satisfies it. A helper that fails calls Fatalf once and returns the zero value.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
}

// RequireOptions narrow which jobs a Require helper counts. The zero value (or nil)
// counts every job of the kind.
type RequireOptions struct {
	// Args, when not nil, must equal the job's args, compared as JSON values: a
	// json.RawMessage or []byte is taken as JSON text, anything else is encoded with
	// encoding/json (a JobArgs value, a map). The app knows a job's args once a Drain
	// delivered it or while its message is visible on a job queue; a job delayed past
	// the last Drain does not match, nor does one whose args are not inline in its
	// message (claim-checked or sealed).
	Args any
	// Meta entries must all be in the job's meta.
	Meta map[string]string
	// State, when set, is the state the job must be in (record.StateQueued,
	// StateSucceeded, StateDead, …).
	State record.State
}

// Jobs returns the status of every job the app's storage holds — each job enqueued so
// far, by the app's Client or from inside a job (batch children and finalizers, callback
// deliveries) — ordered by enqueue time, then job id.
func (a *App) Jobs(ctx context.Context) ([]*record.Status, error) {
	out, err := a.Client.ListJobs(ctx, nightshift.JobFilter{Limit: math.MaxInt})
	if err != nil {
		return nil, fmt.Errorf("nightshifttest: list jobs: %w", err)
	}
	slices.SortStableFunc(out, func(x, y *record.Status) int {
		if c := x.EnqueuedAt.Compare(y.EnqueuedAt); c != 0 {
			return c
		}
		return strings.Compare(x.JobID, y.JobID)
	})
	return out, nil
}

// args returns a job's args as the app last saw them (nil when it has not seen them).
func (a *App) args(ctx context.Context, jobID string) (json.RawMessage, error) {
	a.mu.Lock()
	env := a.seen[jobID]
	a.mu.Unlock()
	if env != nil {
		return env.Args, nil
	}
	for _, q := range a.store.Layout.JobQueues() {
		msgs, err := a.store.Store().Peek(ctx, q, store.MaxReceive)
		if err != nil {
			return nil, fmt.Errorf("nightshifttest: peek %s: %w", q, err)
		}
		for _, m := range msgs {
			a.remember(m.Text)
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if env := a.seen[jobID]; env != nil {
		return env.Args, nil
	}
	return nil, nil
}

// matching returns the jobs of kind that opts admit, and every job the app holds.
func (a *App) matching(ctx context.Context, kind string, opts *RequireOptions) (match, all []*record.Status, err error) {
	if opts == nil {
		opts = &RequireOptions{}
	}
	var want any
	if opts.Args != nil {
		if want, err = jsonValue(opts.Args); err != nil {
			return nil, nil, fmt.Errorf("nightshifttest: RequireOptions.Args: %w", err)
		}
	}
	all, err = a.Jobs(ctx)
	if err != nil {
		return nil, nil, err
	}
	for _, st := range all {
		if st.Kind != kind || (opts.State != "" && st.State != opts.State) || !hasMeta(st.Meta, opts.Meta) {
			continue
		}
		if opts.Args != nil {
			raw, err := a.args(ctx, st.JobID)
			if err != nil {
				return nil, nil, err
			}
			got, err := jsonValue(raw)
			if raw == nil || err != nil || !reflect.DeepEqual(got, want) {
				continue
			}
		}
		match = append(match, st)
	}
	return match, all, nil
}

// jsonValue decodes v's JSON into a generic value for comparison.
func jsonValue(v any) (any, error) {
	var raw []byte
	switch t := v.(type) {
	case json.RawMessage:
		raw = t
	case []byte:
		raw = t
	default:
		b, err := json.Marshal(v)
		if err != nil {
			return nil, err
		}
		raw = b
	}
	var out any
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, err
	}
	return out, nil
}

func hasMeta(have, want map[string]string) bool {
	for k, v := range want {
		if got, ok := have[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// describe names what was asked for, for a failure message.
func describe(kind string, opts *RequireOptions) string {
	s := fmt.Sprintf("of kind %q", kind)
	if opts == nil {
		return s
	}
	if opts.State != "" {
		s += fmt.Sprintf(" in state %s", opts.State)
	}
	if len(opts.Meta) > 0 {
		s += fmt.Sprintf(" with meta %v", opts.Meta)
	}
	if opts.Args != nil {
		if b, err := json.Marshal(opts.Args); err == nil {
			s += " with args " + string(b)
		}
	}
	return s
}

// summary lists the jobs an app holds by kind and state, in a stable order and without
// ids, for a failure message: "resize succeeded ×2, send_email dead".
func summary(all []*record.Status) string {
	if len(all) == 0 {
		return "no jobs"
	}
	counts := map[string]int{}
	for _, st := range all {
		counts[st.Kind+" "+string(st.State)]++
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(counts)) {
		if counts[k] > 1 {
			k += fmt.Sprintf(" ×%d", counts[k])
		}
		parts = append(parts, k)
	}
	return strings.Join(parts, ", ")
}

// RequireEnqueued fails tb unless the app holds exactly one job of kind that opts admit
// (in any state unless opts.State says which), and returns its status. Use
// RequireEnqueuedN for several, RequireNotEnqueued for none.
func RequireEnqueued(ctx context.Context, tb TB, app *App, kind string, opts *RequireOptions) *record.Status {
	tb.Helper()
	sts := requireN(ctx, tb, app, kind, 1, opts)
	if len(sts) != 1 {
		return nil
	}
	return sts[0]
}

// RequireEnqueuedN fails tb unless the app holds exactly n jobs of kind that opts admit,
// and returns their statuses in enqueue order.
func RequireEnqueuedN(ctx context.Context, tb TB, app *App, kind string, n int, opts *RequireOptions) []*record.Status {
	tb.Helper()
	return requireN(ctx, tb, app, kind, n, opts)
}

// RequireNotEnqueued fails tb if the app holds a job of kind that opts admit.
func RequireNotEnqueued(ctx context.Context, tb TB, app *App, kind string, opts *RequireOptions) {
	tb.Helper()
	requireN(ctx, tb, app, kind, 0, opts)
}

func requireN(ctx context.Context, tb TB, app *App, kind string, n int, opts *RequireOptions) []*record.Status {
	tb.Helper()
	match, all, err := app.matching(ctx, kind, opts)
	if err != nil {
		tb.Fatalf("%v", err)
		return nil
	}
	if len(match) != n {
		tb.Fatalf("nightshifttest: want %d job(s) %s, found %d; the app holds %s", n, describe(kind, opts), len(match), summary(all))
		return nil
	}
	return match
}

// status reads a job's status, failing tb when there is none.
// requireState fails tb unless the job is in state want, and returns its status.
func requireState(ctx context.Context, tb TB, app *App, jobID string, want record.State) *record.Status {
	tb.Helper()
	st := status(ctx, tb, app, jobID)
	if st == nil {
		return nil
	}
	if st.State != want {
		tb.Fatalf("nightshifttest: job %s (%s) is %s, not %s%s", jobID, st.Kind, st.State, want, lastError(st))
		return nil
	}
	return st
}

func status(ctx context.Context, tb TB, app *App, jobID string) *record.Status {
	tb.Helper()
	st, err := app.Client.Status(ctx, jobID)
	if errors.Is(err, nightshift.ErrNotFound) {
		tb.Fatalf("nightshifttest: no job %s", jobID)
		return nil
	}
	if err != nil {
		tb.Fatalf("nightshifttest: status of job %s: %v", jobID, err)
		return nil
	}
	return st
}

// RequireSucceeded fails tb unless the job succeeded, and returns its status (the result
// is in Status.Result; app.Client.Result decodes it). Drain the app first: a job that has
// not run yet is queued, not succeeded.
func RequireSucceeded(ctx context.Context, tb TB, app *App, jobID string) *record.Status {
	tb.Helper()
	return requireState(ctx, tb, app, jobID, record.StateSucceeded)
}

// RequireDied fails tb unless the job is dead, and returns its dead-letter record: why
// it died (Reason, Detail), every failed attempt (Errors) and its envelope, which
// app.Client.Replay starts again from.
func RequireDied(ctx context.Context, tb TB, app *App, jobID string) *record.DeadLetter {
	tb.Helper()
	if requireState(ctx, tb, app, jobID, record.StateDead) == nil {
		return nil
	}
	dl, err := app.Client.DeadLetter(ctx, jobID)
	if err != nil {
		tb.Fatalf("nightshifttest: dead letter of job %s: %v", jobID, err)
		return nil
	}
	return dl
}

func lastError(st *record.Status) string {
	if st.LastError == "" {
		return ""
	}
	return " (last error: " + st.LastError + ")"
}
