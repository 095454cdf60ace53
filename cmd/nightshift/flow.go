package main

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/nightshift-jobs/nightshift"
	"github.com/spf13/cobra"
)

func init() {
	subcommands = append(subcommands, newLimitsCmd, newPausedCmd,
		func() *cobra.Command { return newPauseCmd(true) }, func() *cobra.Command { return newPauseCmd(false) })
}

// newPauseCmd is `nightshift pause` (pause true) or `nightshift resume`.
func newPauseCmd(pause bool) *cobra.Command {
	var kind, queue string
	use, short, long := "pause", "Pause a kind or a queue across the fleet", `pause holds every job of a kind (--kind) or a queue (--queue: jobs, jobs-high, jobs-low,
or a full queue name) on its queue: the jobs are not attempts and do not run until resume.
Every instance and worker notices within 5 s (nightshift.PauseCheck). Recurring jobs of a
paused kind are enqueued and held the same way. See docs/flow-control.md.`
	if !pause {
		use, short, long = "resume", "Resume a paused kind or queue", `resume undoes pause: the held jobs run as their messages come back (within about 20 s),
on the attempt they were on.`
	}
	cmd := &cobra.Command{
		Use: use, Short: short, Long: long, Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if (kind == "") == (queue == "") {
				return usageError{fmt.Errorf("%s: give exactly one of --kind or --queue", use)}
			}
			c, err := newClient()
			if err != nil {
				return err
			}
			t := nightshift.PauseTarget{Kind: kind, Queue: fullQueue(c, queue)}
			if pause {
				err = c.Pause(cmd.Context(), t)
			} else {
				err = c.Resume(cmd.Context(), t)
			}
			if err != nil {
				return err
			}
			what := "kind " + t.Kind
			if t.Queue != "" {
				what = "queue " + t.Queue
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%sd %s\n", use, what)
			return nil
		},
	}
	cmd.Flags().StringVar(&kind, "kind", "", "the kind to "+use)
	cmd.Flags().StringVar(&queue, "queue", "", "the queue to "+use+" (jobs, jobs-high, jobs-low or a full name)")
	return cmd
}

// fullQueue maps a layout queue name (jobs, jobs-high, jobs-low) to the prefixed name.
func fullQueue(c *nightshift.Client, q string) string {
	l := c.Store().Layout
	for _, full := range l.JobQueues() {
		if q != "" && (q == full || l.Name(q) == full) {
			return full
		}
	}
	return q
}

func newPausedCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "paused",
		Short: "List the paused kinds and queues",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := newClient()
			if err != nil {
				return err
			}
			p, err := c.Pauses(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), p)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "PAUSED\tNAME\tSINCE")
			queues, kinds := p.Names()
			for _, q := range queues {
				fmt.Fprintf(tw, "queue\t%s\t%s\n", q, p.Queues[q].Format(time.RFC3339))
			}
			for _, k := range kinds {
				fmt.Fprintf(tw, "kind\t%s\t%s\n", k, p.Kinds[k].Format(time.RFC3339))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the pauses as JSON")
	return cmd
}

// limitsReport is what `nightshift limits --json` prints.
type limitsReport struct {
	// Configured are the limits of NIGHTSHIFT_LIMITS as this command sees the setting
	// (limits set in Go, WorkerOptions.Limits, are the app's and not visible here).
	Configured map[string]nightshift.Limits `json:"configured"`
	State      []nightshift.LimitState      `json:"state"`
}

func newLimitsCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "limits",
		Short: "Show the flow-control limits (NIGHTSHIFT_LIMITS) and their state in storage",
		Long: `limits prints the concurrency and rate limits that the NIGHTSHIFT_LIMITS setting
gives each kind (limits set in Go with WorkerOptions.Limits live in the app and are not
shown), then what storage holds for each kind and limit key: the concurrency slot blobs
made so far, and the rate limit's next start time. Keys are named by the hash the blobs
carry (nightshift.LimitKeyHash). See docs/flow-control.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			conf, err := nightshift.ParseLimits(os.Getenv(nightshift.SettingLimits))
			if err != nil {
				return usageError{err}
			}
			c, err := newClient()
			if err != nil {
				return err
			}
			state, err := c.LimitStates(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), limitsReport{Configured: conf, State: state})
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "KIND\tCONCURRENCY\tKEY ARG\tRATE\tBURST")
			kinds := make([]string, 0, len(conf))
			for k := range conf {
				kinds = append(kinds, k)
			}
			slices.Sort(kinds)
			for _, k := range kinds {
				l := conf[k]
				rate := "-"
				if l.Rate > 0 {
					rate = strconv.Itoa(l.Rate) + " per " + cmpDur(l.Per, time.Second).String()
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\n", k, intOrDash(l.Concurrency), cmpStr(l.KeyArg, "-"), rate, max(l.Burst, 1))
			}
			fmt.Fprintln(tw, "\nKIND\tKEY HASH\tSLOT BLOBS\tNEXT START")
			for _, s := range state {
				next := "-"
				if !s.NextStart.IsZero() {
					next = s.NextStart.UTC().Format(time.RFC3339Nano)
					if s.NextStart.Before(time.Now()) {
						next = "now"
					}
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", s.Kind, s.KeyHash, intOrDash(s.Slots), next)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the limits and their state as JSON")
	return cmd
}

func intOrDash(n int) string {
	if n <= 0 {
		return "-"
	}
	return strconv.Itoa(n)
}

func cmpStr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func cmpDur(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}
