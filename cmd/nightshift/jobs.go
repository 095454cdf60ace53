package main

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/record"
)

func init() { subcommands = append(subcommands, newJobsCmd) }

// parseSince reads --since: a duration back from now ("2h") or an RFC 3339 time.
func parseSince(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			d = -d
		}
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	return time.Time{}, usageError{fmt.Errorf("--since %q is neither a duration such as 2h nor an RFC 3339 time", s)}
}

var states = []record.State{record.StateQueued, record.StateRunning, record.StateRetrying, record.StateSucceeded, record.StateDead, record.StateCancelled}

func parseState(s string) (record.State, error) {
	if s == "" {
		return "", nil
	}
	for _, st := range states {
		if strings.EqualFold(s, string(st)) {
			return st, nil
		}
	}
	names := make([]string, len(states))
	for i, st := range states {
		names[i] = string(st)
	}
	return "", usageError{fmt.Errorf("--state %q is not one of %s", s, strings.Join(names, ", "))}
}

// jobsFlags are the filters of `nightshift jobs`.
type jobsFlags struct {
	state, kind, queue, batch, since, until string
	limit                                   int
	scan, asJSON                            bool
}

// filter turns the flags into a JobFilter (a usageError when one is malformed).
func (f *jobsFlags) filter(now time.Time) (nightshift.JobFilter, error) {
	st, err := parseState(f.state)
	if err != nil {
		return nightshift.JobFilter{}, err
	}
	from, err := parseSince(f.since, now)
	if err != nil {
		return nightshift.JobFilter{}, err
	}
	to, err := parseSince(f.until, now)
	if err != nil {
		return nightshift.JobFilter{}, usageError{fmt.Errorf("--until: %w", err)}
	}
	if f.limit < 1 {
		return nightshift.JobFilter{}, usageError{fmt.Errorf("--limit %d must be 1 or more", f.limit)}
	}
	return nightshift.JobFilter{State: st, Kind: f.kind, Queue: f.queue, Batch: f.batch, Since: from, Until: to, Limit: f.limit, Scan: f.scan}, nil
}

func newJobsCmd() *cobra.Command {
	var fl jobsFlags
	cmd := &cobra.Command{
		Use:   "jobs",
		Short: "List jobs, most recently updated first",
		Long: `jobs lists jobs from their status records, most recently updated first.
--since and --until take a duration back from now (2h) or an RFC 3339 time.

Filters on state, kind, queue, batch and time ask the status records' index tags, so
they cost storage calls in proportion to the matches. Records written before the index
are found only with --scan (which lists and reads the whole container) until
"nightshift jobs reindex" has tagged them.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			jf, err := fl.filter(time.Now())
			if err != nil {
				return err
			}
			c, err := newClient()
			if err != nil {
				return err
			}
			list, err := c.ListJobs(cmd.Context(), jf)
			if err != nil {
				return err
			}
			asJSON := fl.asJSON
			if asJSON {
				for _, s := range list {
					s.Logs = nil
				}
				if list == nil {
					list = []*record.Status{}
				}
				return printJSON(cmd.OutOrStdout(), list)
			}
			if len(list) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "no jobs")
				return nil
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "JOB\tKIND\tSTATE\tATTEMPT\tUPDATED\tLAST ERROR")
			for _, s := range list {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", s.JobID, s.Kind, s.State, s.Attempt, fmtTime(s.UpdatedAt), truncate(firstLine(s.LastError), 60))
			}
			return tw.Flush()
		},
	}
	f := cmd.Flags()
	f.StringVar(&fl.state, "state", "", "only jobs in this state (queued, running, retrying, succeeded, dead, cancelled)")
	f.StringVar(&fl.kind, "kind", "", "only jobs of this kind")
	f.StringVar(&fl.queue, "queue", "", "only jobs enqueued on this queue")
	f.StringVar(&fl.batch, "batch", "", "only the jobs of this batch")
	f.StringVar(&fl.since, "since", "", "only jobs updated since (2h, or an RFC 3339 time)")
	f.StringVar(&fl.until, "until", "", "only jobs updated before (2h, or an RFC 3339 time)")
	f.IntVar(&fl.limit, "limit", 50, "at most this many jobs")
	f.BoolVar(&fl.scan, "scan", false, "list and read the whole status container instead of asking the index (finds records written before it)")
	f.BoolVar(&fl.asJSON, "json", false, "print the status records as JSON (without log lines)")
	cmd.AddCommand(newJobsReindexCmd())
	return cmd
}

func newJobsReindexCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "reindex",
		Short: "Give status records written before the index their index tags",
		Long: `reindex lists the status container once and rewrites each record that has no index
tags with the same bytes and its tags (conditionally on the version read, so a job that
moves meanwhile keeps its own write). Run it once after upgrading; it is safe while jobs
run and to run again.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := newClient()
			if err != nil {
				return err
			}
			listed, rewrote, err := c.ReindexJobs(cmd.Context())
			fmt.Fprintf(cmd.OutOrStdout(), "%d status records, %d given their index tags\n", listed, rewrote)
			return err
		},
	}
}

func truncate(s string, n int) string {
	if len([]rune(s)) <= n {
		return s
	}
	return string([]rune(s)[:n-1]) + "…"
}
