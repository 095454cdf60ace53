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

func init() { subcommands = append(subcommands, newLimitsCmd) }

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
