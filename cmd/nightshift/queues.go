package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

func init() { subcommands = append(subcommands, newQueuesCmd) }

func newQueuesCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "queues",
		Short: "Show the approximate depth of the job queues and their poison queues",
		Long: `queues prints the approximate message count of the jobs queue, the high- and
low-priority queues, and each one's poison queue (delayed and in-flight messages included,
as the storage service counts them).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := newClient()
			if err != nil {
				return err
			}
			depths, err := c.QueueDepths(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), depths)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "QUEUE\tMESSAGES\tPOISON QUEUE\tPOISON MESSAGES")
			for _, d := range depths {
				q := d.Queue
				if d.QueueMissing {
					q += " (missing)"
				}
				fmt.Fprintf(tw, "%s\t%d\t%s\t%d\n", q, d.Messages, d.PoisonQueue, d.PoisonMsgs)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the depths as JSON")
	return cmd
}
