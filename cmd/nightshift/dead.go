package main

import (
	"context"
	"errors"
	"fmt"
	"io"
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

// deadFilter selects dead letters by kind, reason, cause and time of death.
type deadFilter struct {
	kind, reason, cause, since string
	scan                       bool
}

func (f *deadFilter) flags(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.kind, "kind", "", "only dead letters of this kind")
	cmd.Flags().StringVar(&f.reason, "reason", "", "only this reason (attempts_exhausted, permanent_error, undecodable, unknown_kind, host_retries_exhausted)")
	cmd.Flags().StringVar(&f.cause, "cause", "", "only this cause: crash (crashes around the job used up its deliveries) or job")
	cmd.Flags().StringVar(&f.since, "since", "", "only deaths since (2h, or an RFC 3339 time)")
	cmd.Flags().BoolVar(&f.scan, "scan", false, "list and read every record instead of asking the index (records written before it; or run `dead reindex` once)")
}

func (f *deadFilter) any() bool {
	return f.kind != "" || f.reason != "" || f.cause != "" || f.since != ""
}

// selection is the filter as the client's selection, checking --cause and --since.
func (f *deadFilter) selection(now time.Time) (nightshift.DeadSelection, error) {
	from, err := parseSince(f.since, now)
	if err != nil {
		return nightshift.DeadSelection{}, err
	}
	cause := record.DeadCause(f.cause)
	if cause != "" && cause != record.CauseCrash && cause != record.CauseJob {
		return nightshift.DeadSelection{}, usageError{fmt.Errorf("--cause %q is neither %s nor %s", f.cause, record.CauseCrash, record.CauseJob)}
	}
	return nightshift.DeadSelection{Kind: f.kind, Reason: record.DeadReason(f.reason), Cause: cause, Since: from, Scan: f.scan}, nil
}

// find lists the dead letters the filter selects, most recent death first: through the
// index when a filter is set (Client.FindDeadLetters).
func (f *deadFilter) find(ctx context.Context, c *nightshift.Client, now time.Time) ([]*record.DeadLetter, error) {
	sel, err := f.selection(now)
	if err != nil {
		return nil, err
	}
	return c.FindDeadLetters(ctx, sel)
}

func newDeadCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dead",
		Short: "Inspect and replay dead letters",
		Long: `dead lists, shows and replays dead letters: jobs that failed for good, and queue messages
that were not valid job envelopes. A replay starts a new life of the job (same id and args,
attempt 1); it is counted in the dead-letter record.`,
	}
	cmd.AddCommand(newDeadListCmd(), newDeadShowCmd(), newDeadReplayCmd(), newDeadReindexCmd())
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
			list, err := f.find(cmd.Context(), c, time.Now())
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
			fmt.Fprintln(tw, "DEAD ID\tKIND\tREASON\tCAUSE\tDIED\tREPLAYS\tDETAIL")
			for _, d := range list {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", d.DeadID, orDash(d.Kind), d.Reason, orDash(string(d.Cause)), fmtTime(d.DiedAt), d.Replays, truncate(firstLine(d.Detail), 60))
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
			row("cause", orDash(string(d.Cause)))
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

// checkReplayArgs checks the selection: ids or filters (or --all), and a rate >= 0.
func checkReplayArgs(ids []string, f deadFilter, all bool, rate float64) error {
	if len(ids) > 0 && f.any() {
		return usageError{errors.New("give ids or filters (--kind, --reason, --cause, --since), not both")}
	}
	if len(ids) == 0 && !f.any() && !all {
		return usageError{errors.New("give dead ids, filters (--kind, --reason, --cause, --since), or --all")}
	}
	if rate < 0 {
		return usageError{fmt.Errorf("--rate %g must be positive (0: no cap)", rate)}
	}
	return nil
}

// progressEvery is how often (in records) a group replay of more records reports its
// progress on standard error.
const progressEvery = 10

// replayProgress prints each outcome as it comes (unless the output is JSON) and, for
// long runs, the counts every progressEvery records on standard error.
func replayProgress(cmd *cobra.Command, asJSON bool) func(nightshift.DeadReplayProgress) {
	return func(p nightshift.DeadReplayProgress) {
		if !asJSON {
			printReplay(cmd.OutOrStdout(), p.Last)
		}
		if p.Total > progressEvery && (p.Done%progressEvery == 0 || p.Done == p.Total) {
			fmt.Fprintf(cmd.ErrOrStderr(), "dead replay: %d of %d (%d replayed, %d skipped, %d failed)\n", p.Done, p.Total, p.Replayed, p.Skipped, p.Failed)
		}
	}
}

// replay runs the group replay and prints its outcome; an error says some replays failed.
func replay(cmd *cobra.Command, c *nightshift.Client, sel nightshift.DeadSelection, opts *nightshift.ReplayDeadOptions, asJSON bool) error {
	rep, err := c.ReplayDead(cmd.Context(), sel, opts)
	if err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	if asJSON {
		if err := printJSON(out, rep.Outcomes); err != nil {
			return err
		}
	} else if rep.Taken == 0 {
		fmt.Fprintln(out, "no dead letters match")
	}
	if rep.Failed > 0 {
		return fmt.Errorf("%d of %d replay(s) failed", rep.Failed, rep.Taken)
	}
	if !asJSON && !opts.DryRun && rep.Taken > 0 {
		fmt.Fprintf(cmd.ErrOrStderr(), "%d replayed, %d skipped\n", rep.Replayed, rep.Skipped)
	}
	return nil
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
--kind, --reason, --cause and --since (--all selects every dead letter), oldest death
first. --cause crash selects the dead letters that crashes around the job caused, not the
job (docs/semantics.md#cause-crash-or-job): after a crash storm, replay those in one step.
--rate caps replays per second (default 10; 0: no cap; like SQS redrive's
MaxNumberOfMessagesPerSecond); runs of more than 10 records report their progress on
standard error. --dry-run lists what would be replayed. Records of messages that were not
valid envelopes cannot be replayed.

Records selected by filters are skipped when they cannot be replayed (not a valid envelope)
or need not be (the job is no longer dead: an earlier replay is pending, running or
succeeded), so running the same command twice does not run jobs twice.

Exit codes: 0 every selected job replayed or skipped, 1 some replays failed, or a record
given by id cannot be replayed (the others went ahead), 2 usage error.`,
		Example: `  nightshift dead replay 01938f4e-…
  nightshift dead replay --reason host_retries_exhausted --cause crash --since 1h
  nightshift dead replay --kind http_fetch --reason attempts_exhausted --since 24h --rate 5 --dry-run`,
		RunE: func(cmd *cobra.Command, ids []string) error {
			if err := checkReplayArgs(ids, f, all, rate); err != nil {
				return err
			}
			sel, err := f.selection(time.Now())
			if err != nil {
				return err
			}
			sel.DeadIDs = ids
			c, err := newClient()
			if err != nil {
				return err
			}
			opts := &nightshift.ReplayDeadOptions{Rate: rate, DryRun: dryRun, Progress: replayProgress(cmd, asJSON)}
			if rate == 0 {
				opts.Rate = -1 // no cap
			}
			return replay(cmd, c, sel, opts, asJSON)
		},
	}
	f.flags(cmd)
	cmd.Flags().Float64Var(&rate, "rate", nightshift.DefaultReplayRate, "at most this many replays per second (0: no cap)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "list what would be replayed, replay nothing")
	cmd.Flags().BoolVar(&all, "all", false, "select every dead letter")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the outcomes as JSON")
	return cmd
}

func printReplay(w io.Writer, o nightshift.DeadReplayOutcome) {
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

func newDeadReindexCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "reindex",
		Short: "Give dead-letter records written before the index their index tags",
		Long: `reindex lists the dead-letters container once and rewrites each record that has no
index tags with the same bytes and its tags (conditionally on the version read). Run it
once after upgrading, so that "dead list" and "dead replay" with filters find the older
records; it is safe to run again.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := newClient()
			if err != nil {
				return err
			}
			listed, rewrote, err := c.ReindexDeadLetters(cmd.Context())
			fmt.Fprintf(cmd.OutOrStdout(), "%d dead-letter records, %d given their index tags\n", listed, rewrote)
			return err
		},
	}
}
