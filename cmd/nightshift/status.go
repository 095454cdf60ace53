package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/record"
)

func init() {
	subcommands = append(subcommands, newStatusCmd, newResultCmd, newLogsCmd)
}

// notFound turns a missing job into a plain message (exit code 1).
func notFound(err error, id string) error {
	if errors.Is(err, nightshift.ErrNotFound) {
		return fmt.Errorf("no job %s (no status record: the id is wrong, or the job has not started and was enqueued without one)", id)
	}
	return err
}

// printStatus writes a status in words.
func printStatus(w io.Writer, st *record.Status) {
	row := func(k, v string) { fmt.Fprintf(w, "%-12s %s\n", k+":", v) }
	row("job", st.JobID)
	row("kind", st.Kind)
	row("state", string(st.State))
	att := fmt.Sprint(st.Attempt)
	if st.MaxAttempts > 0 {
		att += fmt.Sprintf(" of %d", st.MaxAttempts)
	}
	row("attempt", att)
	if st.Replay > 0 {
		row("replay", fmt.Sprint(st.Replay))
	}
	row("queue", st.Queue)
	row("enqueued", fmtTime(st.EnqueuedAt))
	if !st.StartedAt.IsZero() {
		row("started", fmtTime(st.StartedAt))
	}
	if !st.FinishedAt.IsZero() {
		row("finished", fmtTime(st.FinishedAt))
	}
	if st.DurationMS > 0 {
		row("duration", fmt.Sprintf("%d ms", st.DurationMS))
	}
	if !st.NextRunAt.IsZero() {
		row("next run", fmtTime(st.NextRunAt))
	}
	if p := st.Progress; p != nil {
		row("progress", fmtProgress(p)+" at "+fmtTime(p.At))
	}
	if b := st.Batch; b != nil {
		row("batch", fmt.Sprintf("%s: %s, %d of %d succeeded, %d failed (nightshift batch %s)", b.BatchID, b.State, b.Succeeded, b.Total, b.Failed, b.BatchID))
	}
	row("updated", fmtTime(st.UpdatedAt))
	if st.LastError != "" {
		row("last error", firstLine(st.LastError))
	}
	if r := st.Result; r != nil {
		where := "inline"
		if r.Blob != "" {
			where = "blob " + r.Blob
		}
		row("result", fmt.Sprintf("%s, %d bytes, %s (nightshift result %s)", r.ContentType, r.Size, where, st.JobID))
	}
	if st.DeadLetter != "" {
		row("dead letter", st.DeadLetter+" (nightshift dead show "+st.JobID+")")
	}
	if cb := st.Callback; cb != nil {
		state := "not delivered"
		if cb.Delivered {
			state = "delivered " + fmtTime(cb.DeliveredAt)
		}
		detail := fmt.Sprintf("%s to %s: %s after %d attempt(s)", cb.Event, cb.Target, state, cb.Attempts)
		if cb.LastError != "" {
			detail += "; last error: " + firstLine(cb.LastError)
		}
		row("callback", detail)
	}
	if len(st.Logs) > 0 {
		row("logs", fmt.Sprintf("%d line(s) (nightshift logs %s)", len(st.Logs)+st.LogsDropped, st.JobID))
	}
	for k, v := range st.Meta {
		row("meta", k+"="+v)
	}
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

func newStatusCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status ID",
		Short: "Show a job's status",
		Long:  "status prints a job's status record. Exit codes: 0 found, 1 no such job or storage failure.",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, pos []string) error {
			c, err := newClient()
			if err != nil {
				return err
			}
			st, err := c.Status(cmd.Context(), pos[0])
			if err != nil {
				return notFound(err, pos[0])
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), st)
			}
			printStatus(cmd.OutOrStdout(), st)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the status record as JSON")
	return cmd
}

func newResultCmd() *cobra.Command {
	var out string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "result ID",
		Short: "Write a succeeded job's result to standard output or a file",
		Long: `result writes the job's result bytes as stored (JSON for results returned as Go values)
to standard output, or to --out. Exit codes: 0 written, 1 the job has not succeeded, has no
result, or does not exist.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, pos []string) error {
			c, err := newClient()
			if err != nil {
				return err
			}
			ct, data, err := c.ResultBytes(cmd.Context(), pos[0])
			if err != nil {
				return notFound(err, pos[0])
			}
			if asJSON {
				v := map[string]any{"job_id": pos[0], "content_type": ct, "size": len(data)}
				if strings.Contains(ct, "json") {
					v["json"] = jsonRaw(data)
				} else {
					v["bytes"] = data
				}
				if out == "" {
					return printJSON(cmd.OutOrStdout(), v)
				}
			}
			if out != "" {
				if err := os.WriteFile(out, data, 0o644); err != nil {
					return err
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "wrote %d bytes (%s) to %s\n", len(data), ct, out)
				return nil
			}
			_, err = cmd.OutOrStdout().Write(data)
			return err
		},
	}
	cmd.Flags().StringVarP(&out, "out", "o", "", "write the result to this file instead of standard output")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print {job_id, content_type, size, json|bytes} instead of the raw bytes")
	return cmd
}

func newLogsCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "logs ID",
		Short: "Print a job's captured log lines",
		Long:  "logs prints the log lines the job's worker wrote (the newest 200 are kept). Exit codes: 0, 1 no such job.",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, pos []string) error {
			c, err := newClient()
			if err != nil {
				return err
			}
			lines, dropped, err := c.Logs(cmd.Context(), pos[0])
			if err != nil {
				return notFound(err, pos[0])
			}
			if asJSON {
				if lines == nil {
					lines = []record.LogLine{}
				}
				return printJSON(cmd.OutOrStdout(), map[string]any{"job_id": pos[0], "logs": lines, "dropped": dropped})
			}
			w := cmd.OutOrStdout()
			if dropped > 0 {
				fmt.Fprintf(w, "(%d older line(s) dropped)\n", dropped)
			}
			for _, l := range lines {
				fmt.Fprintf(w, "%s %-5s attempt %d  %s\n", l.Time.UTC().Format("2006-01-02T15:04:05.000Z"), l.Level, l.Attempt, l.Message)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the lines as JSON")
	return cmd
}

// fmtProgress renders reported progress: "40%" or "40% (40 of 100 files)".
func fmtProgress(p *record.Progress) string {
	s := fmt.Sprintf("%.0f%%", p.Fraction*100)
	if p.Message != "" {
		s += " (" + p.Message + ")"
	}
	return s
}
