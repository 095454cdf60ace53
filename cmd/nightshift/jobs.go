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

func newJobsCmd() *cobra.Command {
	var (
		state, kind, since string
		limit              int
		asJSON             bool
	)
	cmd := &cobra.Command{
		Use:   "jobs",
		Short: "List jobs, most recently updated first",
		Long: `jobs lists jobs from their status records, most recently updated first.
--since takes a duration back from now (2h) or an RFC 3339 time.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := parseState(state)
			if err != nil {
				return err
			}
			from, err := parseSince(since, time.Now())
			if err != nil {
				return err
			}
			if limit < 1 {
				return usageError{fmt.Errorf("--limit %d must be 1 or more", limit)}
			}
			c, err := newClient()
			if err != nil {
				return err
			}
			list, err := c.ListJobs(cmd.Context(), nightshift.JobFilter{State: st, Kind: kind, Since: from, Limit: limit})
			if err != nil {
				return err
			}
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
	f.StringVar(&state, "state", "", "only jobs in this state (queued, running, retrying, succeeded, dead, cancelled)")
	f.StringVar(&kind, "kind", "", "only jobs of this kind")
	f.StringVar(&since, "since", "", "only jobs updated since (2h, or an RFC 3339 time)")
	f.IntVar(&limit, "limit", 50, "at most this many jobs")
	f.BoolVar(&asJSON, "json", false, "print the status records as JSON (without log lines)")
	return cmd
}

func truncate(s string, n int) string {
	if len([]rune(s)) <= n {
		return s
	}
	return string([]rune(s)[:n-1]) + "…"
}
