package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/internal/delayed"
	"github.com/nightshift-jobs/nightshift/maintenance"
	"github.com/nightshift-jobs/nightshift/record"
	"github.com/nightshift-jobs/nightshift/schedule"
	"github.com/nightshift-jobs/nightshift/storage"
)

func init() { subcommands = append(subcommands, newSchedulesCmd, newReportCmd) }

// schedulesOutput is what `nightshift schedules --json` prints.
type schedulesOutput struct {
	Now       time.Time        `json:"now"`
	Recurring []schedule.Info  `json:"recurring"`
	Delayed   []*delayed.Entry `json:"delayed"`
}

func schedStore() (*storage.Clients, error) { return storage.FromEnv(os.Getenv, nil) }

func newSchedulesCmd() *cobra.Command {
	var (
		asJSON bool
		tz     string
		next   int
	)
	cmd := &cobra.Command{
		Use:   "schedules",
		Short: "List recurring jobs (next runs, last outcome) and delayed jobs waiting in the durable schedule",
		Long: `schedules lists the shipped handler's recurring jobs with the schedule in force (the app
setting NIGHTSHIFT_SCHEDULE_<NAME> from the environment, else the declared default), their next
run times in --tz (the Functions host evaluates schedules in UTC on Flex Consumption), and the
status of the latest occurrence's job; then the delayed jobs waiting in the durable schedule
(due beyond the queue's 7-day limit), soonest first.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			loc, err := time.LoadLocation(tz)
			if err != nil {
				return usageError{fmt.Errorf("--tz %q: %w", tz, err)}
			}
			if next < 1 || next > 100 {
				return usageError{fmt.Errorf("--next %d: expected 1–100", next)}
			}
			store, err := schedStore()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			now := time.Now()
			infos, err := schedule.Describe(ctx, store, shippedRecurring(), os.Getenv, loc, now, next)
			if err != nil {
				return err
			}
			entries, err := schedule.Scheduled(ctx, store)
			if err != nil {
				return err
			}
			if entries == nil {
				entries = []*delayed.Entry{}
			}
			out := schedulesOutput{Now: now.UTC(), Recurring: infos, Delayed: entries}
			if asJSON {
				return writeSchedJSON(cmd.OutOrStdout(), out)
			}
			printSchedules(cmd.OutOrStdout(), out, loc)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().StringVar(&tz, "tz", "UTC", "time zone for next run times (IANA name, e.g. Europe/Berlin)")
	cmd.Flags().IntVar(&next, "next", 3, "how many next run times to show per recurring job")
	cmd.AddCommand(newSchedulesCancelCmd())
	return cmd
}

func newSchedulesCancelCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "cancel <job-id>",
		Short: "Cancel a delayed job before it runs (removes it from the durable schedule and marks it cancelled)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			store, err := schedStore()
			if err != nil {
				return err
			}
			c := nightshift.NewClient(store, nil)
			removed, st, err := schedule.Cancel(cmd.Context(), c, args[0])
			if err != nil {
				if errors.Is(err, nightshift.ErrTerminal) {
					return exitError{exitFailure, err}
				}
				return err
			}
			if asJSON {
				return writeSchedJSON(cmd.OutOrStdout(), map[string]any{"job_id": args[0], "removed_from_schedule": removed, "status": st})
			}
			where := "it was not in the durable schedule (a queued message of it will be skipped)"
			if removed {
				where = "removed from the durable schedule"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "job %s cancelled; %s\n", args[0], where)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func writeSchedJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, string(b))
	return err
}

func printSchedules(w io.Writer, out schedulesOutput, loc *time.Location) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "RECURRING\tKIND\tSCHEDULE\tPAST DUE\tNEXT (%s)\tLAST\n", loc)
	for _, in := range out.Recurring {
		sched := in.Schedule
		if in.Source == "setting" {
			sched += " (" + in.Setting + ")"
		}
		next := "-"
		if in.Error != "" {
			next = "invalid: " + in.Error
		} else if len(in.Next) > 0 {
			var parts []string
			for _, t := range in.Next {
				parts = append(parts, t.In(loc).Format("2006-01-02 15:04:05"))
			}
			next = strings.Join(parts, ", ")
		}
		last := "never ran"
		if in.Last != nil {
			last = fmt.Sprintf("%s (occurrence %s, job %s)", in.Last.State, in.Last.Occurrence.In(loc).Format("2006-01-02 15:04:05"), in.Last.JobID)
			if in.Last.LastError != "" {
				last += ": " + firstLineOf(in.Last.LastError, 80)
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", in.Name, in.Kind, sched, in.PastDue, next, last)
	}
	tw.Flush()
	fmt.Fprintf(w, "\nDELAYED JOBS IN THE DURABLE SCHEDULE: %d\n", len(out.Delayed))
	if len(out.Delayed) == 0 {
		return
	}
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "DUE (%s)\tJOB ID\tKIND\tQUEUE\tSCHEDULED AT\n", loc)
	for _, e := range out.Delayed {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.Due.In(loc).Format("2006-01-02 15:04:05"), e.JobID, e.Kind, e.Queue, e.ScheduledAt.UTC().Format(time.RFC3339))
	}
	tw.Flush()
}

func firstLineOf(s string, n int) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > n {
		s = s[:n] + "…"
	}
	return s
}

func newReportCmd() *cobra.Command {
	var (
		date   string
		asJSON bool
		list   bool
	)
	cmd := &cobra.Command{
		Use:   "report",
		Short: "Show a daily maintenance report (jobs per kind and state, failures, durations, deletions)",
		Long: `report prints the daily summary the maintenance job writes to the reports container
(daily/<yyyy-mm-dd>.json): the jobs whose status was last written that UTC day, per kind and
state, with p50/p95 run times, the most frequent failure reasons, the dead letters of the day
and what the retention deleted. Without --date it shows the latest report; --list lists the
days that have one.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if date != "" {
				if _, err := time.Parse(maintenance.DateLayout, date); err != nil {
					return usageError{fmt.Errorf("--date %q: expected yyyy-mm-dd", date)}
				}
			}
			store, err := schedStore()
			if err != nil {
				return err
			}
			if list {
				dates, err := maintenance.ReportDates(cmd.Context(), store)
				if err != nil {
					return err
				}
				if asJSON {
					if dates == nil {
						dates = []string{}
					}
					return writeSchedJSON(cmd.OutOrStdout(), dates)
				}
				for _, d := range dates {
					fmt.Fprintln(cmd.OutOrStdout(), d)
				}
				return nil
			}
			rep, err := maintenance.ReadReport(cmd.Context(), store, date)
			if err != nil {
				return err
			}
			if asJSON {
				return writeSchedJSON(cmd.OutOrStdout(), rep)
			}
			printReport(cmd.OutOrStdout(), rep)
			return nil
		},
	}
	cmd.Flags().StringVar(&date, "date", "", "the day (yyyy-mm-dd, UTC); default the latest report")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().BoolVar(&list, "list", false, "list the days that have a report")
	return cmd
}

func stateCounts(m map[record.State]int) string {
	order := []record.State{record.StateQueued, record.StateRunning, record.StateRetrying, record.StateSucceeded, record.StateDead, record.StateCancelled}
	var parts []string
	seen := map[record.State]bool{}
	for _, s := range order {
		if n := m[s]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", s, n))
		}
		seen[s] = true
	}
	var other []string
	for s, n := range m {
		if !seen[s] && n > 0 {
			other = append(other, fmt.Sprintf("%s %d", s, n))
		}
	}
	sort.Strings(other)
	parts = append(parts, other...)
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ", ")
}

func printReport(w io.Writer, r *maintenance.Report) {
	fmt.Fprintf(w, "nightshift report for %s (UTC), generated %s\n", r.Date, r.GeneratedAt.UTC().Format(time.RFC3339))
	fmt.Fprintf(w, "jobs: %d (%s)\n\n", r.Jobs, stateCounts(r.ByState))
	if len(r.Kinds) > 0 {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "KIND\tJOBS\tSTATES\tRETRIED\tP50 MS\tP95 MS\tMAX MS")
		for _, k := range r.Kinds {
			fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%d\t%d\t%d\n", k.Kind, k.Jobs, stateCounts(k.ByState), k.Retried, k.Duration.P50, k.Duration.P95, k.Duration.Max)
		}
		tw.Flush()
		fmt.Fprintln(w)
	}
	if len(r.Failures) > 0 {
		fmt.Fprintln(w, "failures (most frequent first):")
		for _, f := range r.Failures {
			class := f.Class
			if class == "" {
				class = "-"
			}
			fmt.Fprintf(w, "  %4d  %s  %s/%s  %s  (e.g. %s)\n", f.Count, f.Kind, f.State, class, f.Error, f.Example)
		}
		fmt.Fprintln(w)
	}
	if len(r.DeadLetters) > 0 {
		var parts []string
		for reason, n := range r.DeadLetters {
			parts = append(parts, fmt.Sprintf("%s %d", reason, n))
		}
		sort.Strings(parts)
		fmt.Fprintf(w, "dead letters recorded: %s\n", strings.Join(parts, ", "))
	}
	ret := r.Retention
	dry := ""
	if ret.DryRun {
		dry = " (dry run: would delete)"
	}
	fmt.Fprintf(w, "retention%s: statuses %d days, dead letters %d days; deleted %d statuses, %d results, %d dead letters\n",
		dry, ret.RetentionDays, ret.DeadLetterRetentionDays, ret.DeletedStatuses, ret.DeletedResults, ret.DeletedDeadLetters)
}
