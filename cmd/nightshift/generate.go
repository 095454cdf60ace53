package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/nightshift-jobs/nightshift/schedule"
)

func init() { subcommands = append(subcommands, newGenerateCmd) }

// shippedRecurring are the recurring jobs of the shipped handler (handler/): the
// built-in ones. `generate` writes their timer functions; `schedules` lists them.
func shippedRecurring() []schedule.Recurring { return schedule.Builtin() }

func newGenerateCmd() *cobra.Command {
	var (
		dir            string
		check, setting bool
	)
	cmd := &cobra.Command{
		Use:   "generate",
		Short: "Write the timer functions (function.json) of the recurring jobs and the schedule sweeper",
		Long: `generate writes functions/Recurring<Name>/function.json for every recurring job the shipped
handler declares (schedule.Builtin) and functions/ScheduleSweep/function.json, and removes
Recurring* folders no declaration backs any more. Each recurring job's schedule is the app
setting %NIGHTSHIFT_SCHEDULE_<NAME>%; --settings prints those settings with their default
schedules (JSON), for local.settings.json and the deployment.

--check changes nothing and exits 1 when the folder is out of date (CI).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			decls := shippedRecurring()
			if setting {
				return printGenerateJSON(cmd, schedule.DefaultSettings(decls))
			}
			if dir == "" {
				root, err := findRepoRoot()
				if err != nil {
					return usageError{fmt.Errorf("%w (or pass --dir)", err)}
				}
				dir = filepath.Join(root, "functions")
			}
			if check {
				drift, err := schedule.Check(dir, decls, schedule.GenerateOptions{})
				if err != nil {
					return err
				}
				if len(drift) > 0 {
					var lines []string
					for _, d := range drift {
						lines = append(lines, "  "+d.String())
					}
					return exitError{exitFailure, fmt.Errorf("%s is out of date; run `nightshift generate`:\n%s", dir, strings.Join(lines, "\n"))}
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s is up to date\n", dir)
				return nil
			}
			changed, err := schedule.WriteFunctions(dir, decls, schedule.GenerateOptions{})
			if err != nil {
				return err
			}
			if len(changed) == 0 {
				fmt.Fprintf(cmd.OutOrStdout(), "%s is up to date\n", dir)
			}
			for _, c := range changed {
				fmt.Fprintf(cmd.OutOrStdout(), "wrote %s\n", filepath.Join(dir, c))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "functions folder (default <repository>/functions)")
	cmd.Flags().BoolVar(&check, "check", false, "only check; exit 1 when the files are out of date")
	cmd.Flags().BoolVar(&setting, "settings", false, "print the schedule app settings with their defaults (JSON) and exit")
	return cmd
}

func printGenerateJSON(cmd *cobra.Command, m map[string]string) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(cmd.OutOrStdout(), string(b))
	return err
}
