package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/envelope"
	"github.com/nightshift-jobs/nightshift/record"
	"github.com/nightshift-jobs/nightshift/storage"
)

func init() { subcommands = append(subcommands, newDeadCmd) }

// deadFilter selects dead letters by kind, reason and time of death.
type deadFilter struct {
	kind, reason, since string
}

func (f *deadFilter) flags(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.kind, "kind", "", "only dead letters of this kind")
	cmd.Flags().StringVar(&f.reason, "reason", "", "only this reason (attempts_exhausted, permanent_error, undecodable, unknown_kind, host_retries_exhausted)")
	cmd.Flags().StringVar(&f.since, "since", "", "only deaths since (2h, or an RFC 3339 time)")
}

func (f *deadFilter) any() bool { return f.kind != "" || f.reason != "" || f.since != "" }

func (f *deadFilter) apply(all []*record.DeadLetter, now time.Time) ([]*record.DeadLetter, error) {
	from, err := parseSince(f.since, now)
	if err != nil {
		return nil, err
	}
	var out []*record.DeadLetter
	for _, d := range all {
		if (f.kind == "" || d.Kind == f.kind) && (f.reason == "" || string(d.Reason) == f.reason) && (from.IsZero() || !d.DiedAt.Before(from)) {
			out = append(out, d)
		}
	}
	return out, nil
}

func newDeadCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dead",
		Short: "Inspect and replay dead letters",
		Long: `dead lists, shows and replays dead letters: jobs that failed for good, and queue messages
that were not valid job envelopes. A replay starts a new life of the job (same id and args,
attempt 1); it is counted in the dead-letter record.`,
	}
	cmd.AddCommand(newDeadListCmd(), newDeadShowCmd(), newDeadReplayCmd())
	return cmd
}

func newDeadListCmd() *cobra.Command {
	var f deadFilter
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List dead letters, most recent death first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := newClient()
			if err != nil {
				return err
			}
			all, err := c.DeadLetters(cmd.Context())
			if err != nil {
				return err
			}
			list, err := f.apply(all, time.Now())
			if err != nil {
				return err
			}
			if asJSON {
				if list == nil {
					list = []*record.DeadLetter{}
				}
				return printJSON(cmd.OutOrStdout(), list)
			}
			if len(list) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "no dead letters")
				return nil
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "DEAD ID\tKIND\tREASON\tDIED\tREPLAYS\tDETAIL")
			for _, d := range list {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", d.DeadID, orDash(d.Kind), d.Reason, fmtTime(d.DiedAt), d.Replays, truncate(firstLine(d.Detail), 60))
			}
			return tw.Flush()
		},
	}
	f.flags(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the records as JSON")
	return cmd
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func newDeadShowCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "show ID",
		Short: "Show one dead letter",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, pos []string) error {
			c, err := newClient()
			if err != nil {
				return err
			}
			d, err := c.DeadLetter(cmd.Context(), pos[0])
			if err != nil {
				if errors.Is(err, nightshift.ErrNotFound) {
					return fmt.Errorf("no dead letter %s", pos[0])
				}
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), d)
			}
			w := cmd.OutOrStdout()
			row := func(k, v string) { fmt.Fprintf(w, "%-12s %s\n", k+":", v) }
			row("dead id", d.DeadID)
			row("job", orDash(d.JobID))
			row("kind", orDash(d.Kind))
			row("reason", string(d.Reason))
			row("detail", d.Detail)
			row("queue", d.Queue)
			row("enqueued", fmtTime(d.EnqueuedAt))
			row("died", fmtTime(d.DiedAt))
			row("replays", fmt.Sprint(d.Replays))
			if !d.ReplayedAt.IsZero() {
				row("replayed", fmtTime(d.ReplayedAt))
			}
			if d.Envelope != nil {
				row("args", truncate(string(deadArgs(cmd.Context(), c.Store(), d.Envelope)), 200))
			}
			if d.Raw != "" {
				row("raw", truncate(d.Raw, 200))
			}
			if len(d.RawBase64) > 0 {
				row("raw bytes", fmt.Sprintf("%d bytes (not UTF-8)", len(d.RawBase64)))
			}
			for _, e := range d.Errors {
				fmt.Fprintf(w, "  attempt %d at %s [%s]: %s\n", e.Attempt, fmtTime(e.At), e.Class, firstLine(e.Error))
				if e.Stack != "" { // operators see panic stacks here; API callers never do
					fmt.Fprintf(w, "    %s\n", strings.ReplaceAll(strings.TrimRight(e.Stack, "\n"), "\n", "\n    "))
				}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the record as JSON")
	return cmd
}

// replayOutcome is one line of `dead replay --json`.
type replayOutcome struct {
	DeadID string `json:"dead_id"`
	JobID  string `json:"job_id,omitempty"`
	Kind   string `json:"kind,omitempty"`
	Replay int    `json:"replay,omitempty"`
	DryRun bool   `json:"dry_run,omitempty"`
	// Skipped says why a record selected by filters was left alone (not replayable, or
	// its job is no longer dead); Error is a failed replay of a record asked for by id.
	Skipped string `json:"skipped,omitempty"`
	Error   string `json:"error,omitempty"`
}

// pacer spaces calls at most rate per second: call i waits until start + i/rate. The
// first call goes at once.
type pacer struct {
	rate  float64
	start time.Time
	n     int
}

func (p *pacer) wait(ctx context.Context) error {
	if p.rate <= 0 {
		return nil
	}
	if p.n == 0 {
		p.start = time.Now()
	}
	due := p.start.Add(time.Duration(float64(p.n) / p.rate * float64(time.Second)))
	p.n++
	d := time.Until(due)
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// checkReplayArgs checks the selection: ids or filters (or --all), and a rate >= 0.
func checkReplayArgs(ids []string, f deadFilter, all bool, rate float64) error {
	if len(ids) > 0 && f.any() {
		return usageError{errors.New("give ids or filters (--kind, --reason, --since), not both")}
	}
	if len(ids) == 0 && !f.any() && !all {
		return usageError{errors.New("give dead ids, filters (--kind, --reason, --since), or --all")}
	}
	if rate < 0 {
		return usageError{fmt.Errorf("--rate %g must be positive", rate)}
	}
	return nil
}

// selectDeadTargets loads the dead letters given by id, or those the filters select,
// oldest death first (replay in the order things broke).
func selectDeadTargets(ctx context.Context, c *nightshift.Client, ids []string, f deadFilter) ([]*record.DeadLetter, error) {
	if len(ids) > 0 {
		var targets []*record.DeadLetter
		for _, id := range ids {
			d, err := c.DeadLetter(ctx, id)
			if err != nil {
				if errors.Is(err, nightshift.ErrNotFound) {
					return nil, fmt.Errorf("no dead letter %s", id)
				}
				return nil, err
			}
			targets = append(targets, d)
		}
		return targets, nil
	}
	list, err := c.DeadLetters(ctx)
	if err != nil {
		return nil, err
	}
	targets, err := f.apply(list, time.Now())
	if err != nil {
		return nil, err
	}
	slices.Reverse(targets)
	return targets, nil
}

// replayRun replays the selected dead letters one by one and counts the outcomes.
type replayRun struct {
	c                *nightshift.Client
	byID, dryRun     bool
	pacer            *pacer
	failed, replayed int
}

// run replays every target, prints the outcomes and returns an error when any failed.
func (r *replayRun) run(ctx context.Context, cmd *cobra.Command, targets []*record.DeadLetter, asJSON bool) error {
	out := cmd.OutOrStdout()
	results := []replayOutcome{}
	for _, d := range targets {
		o, err := r.one(ctx, d)
		if err != nil {
			return err
		}
		results = append(results, o)
		if !asJSON {
			printReplay(out, o)
		}
	}
	if asJSON {
		if err := printJSON(out, results); err != nil {
			return err
		}
	} else if len(targets) == 0 {
		fmt.Fprintln(out, "no dead letters match")
	}
	if r.failed > 0 {
		return fmt.Errorf("%d of %d replay(s) failed", r.failed, len(targets))
	}
	if !asJSON && !r.dryRun && len(targets) > 0 {
		fmt.Fprintf(cmd.ErrOrStderr(), "%d replayed, %d skipped\n", r.replayed, len(targets)-r.replayed)
	}
	return nil
}

// problem records why a record was not replayed: an error for a record asked for by id,
// a skip for one that filters selected but that cannot (or need not) be replayed.
func (r *replayRun) problem(o *replayOutcome, msg string) {
	if r.byID {
		o.Error = msg
		r.failed++
	} else {
		o.Skipped = msg
	}
}

// one replays (or, in a dry run, only checks) one dead letter.
func (r *replayRun) one(ctx context.Context, d *record.DeadLetter) (replayOutcome, error) {
	o := replayOutcome{DeadID: d.DeadID, JobID: d.JobID, Kind: d.Kind, DryRun: r.dryRun}
	if d.Envelope == nil {
		r.problem(&o, fmt.Sprintf("not replayable: the message was not a valid job envelope (%s)", d.Reason))
		return o, nil
	}
	st, err := r.c.Status(ctx, d.JobID)
	switch {
	case err == nil && st.State != record.StateDead:
		r.problem(&o, fmt.Sprintf("job is %s (life %d), not dead: already replayed or cancelled", st.State, st.Replay))
		return o, nil
	case err != nil && !errors.Is(err, nightshift.ErrNotFound):
		return o, err
	case r.dryRun:
		o.Replay = max(d.Replays+1, d.Envelope.Replay+1)
		if err == nil {
			o.Replay = max(o.Replay, st.Replay+1)
		}
		return o, nil
	}
	if err := r.pacer.wait(ctx); err != nil {
		return o, err
	}
	res, err := r.c.Replay(ctx, d.DeadID)
	switch {
	case err == nil:
		o.Replay = res.Replay
		r.replayed++
	case errors.Is(err, nightshift.ErrNotDead):
		r.problem(&o, err.Error())
	default:
		o.Error = err.Error()
		r.failed++
	}
	return o, nil
}

func newDeadReplayCmd() *cobra.Command {
	var (
		f      deadFilter
		rate   float64
		dryRun bool
		all    bool
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "replay [ID...]",
		Short: "Replay dead jobs by id, or every dead letter matching filters",
		Long: `replay starts a new life of each selected dead job: by id, or every dead letter matching
--kind, --reason and --since (--all selects every dead letter). --rate caps replays per
second (like SQS redrive's MaxNumberOfMessagesPerSecond); --dry-run lists what would be
replayed. Records of messages that were not valid envelopes cannot be replayed.

Records selected by filters are skipped when they cannot be replayed (not a valid envelope)
or need not be (the job is no longer dead: an earlier replay is pending, running or
succeeded), so running the same command twice does not run jobs twice.

Exit codes: 0 every selected job replayed or skipped, 1 some replays failed, or a record
given by id cannot be replayed (the others went ahead), 2 usage error.`,
		Example: `  nightshift dead replay 01938f4e-…
  nightshift dead replay --kind http_fetch --reason attempts_exhausted --since 24h --rate 5 --dry-run`,
		RunE: func(cmd *cobra.Command, ids []string) error {
			if err := checkReplayArgs(ids, f, all, rate); err != nil {
				return err
			}
			c, err := newClient()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			targets, err := selectDeadTargets(ctx, c, ids, f)
			if err != nil {
				return err
			}
			r := &replayRun{c: c, byID: len(ids) > 0, dryRun: dryRun, pacer: &pacer{rate: rate}}
			return r.run(ctx, cmd, targets, asJSON)
		},
	}
	f.flags(cmd)
	cmd.Flags().Float64Var(&rate, "rate", 0, "at most this many replays per second (default: no cap)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "list what would be replayed, replay nothing")
	cmd.Flags().BoolVar(&all, "all", false, "select every dead letter")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the outcomes as JSON")
	return cmd
}

func printReplay(w io.Writer, o replayOutcome) {
	switch {
	case o.Error != "":
		fmt.Fprintf(w, "%s: %s\n", o.DeadID, o.Error)
	case o.Skipped != "":
		fmt.Fprintf(w, "skipped %s: %s\n", o.DeadID, o.Skipped)
	case o.DryRun:
		fmt.Fprintf(w, "would replay %s (kind %s) as life %d\n", o.DeadID, o.Kind, o.Replay)
	default:
		fmt.Fprintf(w, "replayed %s (kind %s) as life %d\n", o.DeadID, o.Kind, o.Replay)
	}
}

// deadArgs returns a dead job's args for the operator: args_sealed opened with the
// configured key (docs/encryption.md), or a note saying why they cannot be shown.
func deadArgs(ctx context.Context, store *storage.Clients, env *envelope.Envelope) []byte {
	if len(env.ArgsSealed) == 0 {
		return env.Args
	}
	if store.Sealer == nil {
		return []byte(storage.NoKeyError("args_sealed").Error())
	}
	data, err := store.Sealer.Open(ctx, env.ArgsSealed, storage.ArgsAAD(env.JobID))
	if err != nil {
		return []byte("(sealed; " + err.Error() + ")")
	}
	return data
}
