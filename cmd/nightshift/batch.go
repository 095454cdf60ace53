package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/nightshift-jobs/nightshift"
)

func init() { subcommands = append(subcommands, newBatchCmd) }

func newBatchCmd() *cobra.Command {
	var asJSON, running, children, resume bool
	cmd := &cobra.Command{
		Use:   "batch BATCH_ID",
		Short: "Show a batch: counts of its children, its state and its finalizer",
		Long: `batch shows a fan-out/fan-in batch (docs/batches.md): how many children it has, how
many succeeded, failed and are pending, the batch state, and its finalizer job.

--running also counts the pending children that are running (it reads each pending
child's status). --children lists every child's state (and a failed child's error).
--resume finishes enqueueing a batch whose start was interrupted, from its manifest.

Exit codes: 0 shown, 1 failure (no such batch, storage error), 2 usage.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newClient()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			id := args[0]
			if resume {
				if _, err := c.ResumeBatch(ctx, id); err != nil {
					return err
				}
			}
			bs, err := c.Batch(ctx, id, &nightshift.BatchStatusOptions{CountRunning: running})
			if err != nil {
				return err
			}
			var kids []nightshift.BatchChild
			if children {
				if kids, err = c.BatchChildren(ctx, id); err != nil {
					return err
				}
			}
			out := cmd.OutOrStdout()
			if asJSON {
				v := struct {
					*nightshift.BatchStatus
					Children []nightshift.BatchChild `json:"children,omitempty"`
				}{bs, kids}
				return printJSON(out, v)
			}
			tw := tabwriter.NewWriter(out, 0, 4, 1, ' ', 0)
			fmt.Fprintf(tw, "batch:\t%s\n", bs.BatchID)
			fmt.Fprintf(tw, "state:\t%s\n", bs.State)
			if bs.ParentID != "" {
				fmt.Fprintf(tw, "parent:\t%s\n", bs.ParentID)
			}
			fmt.Fprintf(tw, "total:\t%d (enqueued %d)\n", bs.Total, bs.Enqueued)
			fmt.Fprintf(tw, "succeeded:\t%d\n", bs.Succeeded)
			fmt.Fprintf(tw, "failed:\t%d\n", bs.Failed)
			fmt.Fprintf(tw, "pending:\t%d\n", bs.Pending)
			if bs.Running >= 0 {
				fmt.Fprintf(tw, "running:\t%d\n", bs.Running)
			}
			fmt.Fprintf(tw, "policy:\t%s (allowed failures %d)\n", bs.FailurePolicy, bs.AllowedFailures)
			if bs.FinalizerJobID != "" {
				state := "not enqueued yet"
				if bs.Finalizer != nil {
					state = string(bs.Finalizer.State)
				}
				fmt.Fprintf(tw, "finalizer:\t%s (%s)\n", bs.FinalizerJobID, state)
			}
			fmt.Fprintf(tw, "created:\t%s\n", fmtTime(bs.CreatedAt))
			fmt.Fprintf(tw, "finished:\t%s\n", fmtTime(bs.FinishedAt))
			if err := tw.Flush(); err != nil {
				return err
			}
			if children {
				tw = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "INDEX\tJOB\tSTATE\tERROR")
				for _, k := range kids {
					fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", k.Index, k.JobID, k.State, k.Error)
				}
				return tw.Flush()
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVar(&asJSON, "json", false, "print the batch status as JSON")
	f.BoolVar(&running, "running", false, "count the running children (reads every pending child's status)")
	f.BoolVar(&children, "children", false, "list every child's state")
	f.BoolVar(&resume, "resume", false, "finish enqueueing an interrupted batch first")
	return cmd
}
