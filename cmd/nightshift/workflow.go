package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/record"
)

func init() { subcommands = append(subcommands, newWorkflowCmd) }

// workflowFile is the JSON form of a workflow to start (`nightshift workflow start FILE`).
type workflowFile struct {
	WorkflowID string `json:"workflow_id,omitempty"`
	Name       string `json:"name,omitempty"`
	Steps      []struct {
		Name      string           `json:"name"`
		Kind      string           `json:"kind"`
		Args      json.RawMessage  `json:"args,omitempty"`
		DependsOn []string         `json:"depends_on,omitempty"`
		OnFailure record.OnFailure `json:"on_failure,omitempty"`
	} `json:"steps"`
	// Callback is told once when the workflow ends, as in POST /api/workflows.
	Callback *struct {
		URL   string `json:"url,omitempty"`
		Queue string `json:"queue,omitempty"`
	} `json:"callback,omitempty"`
}

func newWorkflowCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "workflow",
		Short: "Start, show and cancel workflows (DAGs of jobs)",
		Long: `workflow starts, shows and cancels workflows (docs/workflows.md).

  workflow start FILE   start the workflow FILE describes (JSON; "-" reads stdin):
                        {"workflow_id": "…", "name": "…", "steps": [{"name": "export",
                        "kind": "export", "args": {…}, "depends_on": [], "on_failure":
                        "fail"|"skip_dependants"|"continue"}]}; starting an id again
                        resumes its start
  workflow status ID    the workflow's state and every step's
  workflow cancel ID    cancel it: pending steps never run, enqueued ones are cancelled

Exit codes: 0 done, 1 failure (no such workflow, invalid workflow, storage error), 2 usage.`,
	}
	var asJSON bool
	show := func(cmd *cobra.Command, w *record.Workflow) error {
		if asJSON {
			return printJSON(cmd.OutOrStdout(), w)
		}
		return printWorkflow(cmd.OutOrStdout(), w)
	}
	start := &cobra.Command{
		Use: "start FILE", Short: "Start a workflow from a JSON file", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := readWorkflowFile(cmd.InOrStdin(), args[0])
			if err != nil {
				return err
			}
			c, err := newClient()
			if err != nil {
				return err
			}
			w, err := c.StartWorkflow(cmd.Context(), p)
			if err != nil {
				return err
			}
			return show(cmd, w)
		},
	}
	status := &cobra.Command{
		Use: "status ID", Short: "Show a workflow and its steps", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newClient()
			if err != nil {
				return err
			}
			w, err := c.Workflow(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return show(cmd, w)
		},
	}
	cancel := &cobra.Command{
		Use: "cancel ID", Short: "Cancel a workflow", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newClient()
			if err != nil {
				return err
			}
			w, err := c.CancelWorkflow(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return show(cmd, w)
		},
	}
	for _, sub := range []*cobra.Command{start, status, cancel} {
		sub.Flags().BoolVar(&asJSON, "json", false, "print the workflow record as JSON")
		cmd.AddCommand(sub)
	}
	return cmd
}

// readWorkflowFile reads a workflowFile ("-": stdin) strictly.
func readWorkflowFile(stdin io.Reader, name string) (nightshift.WorkflowParams, error) {
	var r io.Reader = stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nightshift.WorkflowParams{}, err
		}
		defer f.Close()
		r = f
	}
	dec := json.NewDecoder(io.LimitReader(r, 16<<20))
	dec.DisallowUnknownFields()
	var wf workflowFile
	if err := dec.Decode(&wf); err != nil {
		return nightshift.WorkflowParams{}, fmt.Errorf("workflow file %s: %w", name, err)
	}
	p := nightshift.WorkflowParams{WorkflowID: wf.WorkflowID, Name: wf.Name}
	if wf.Callback != nil {
		p.CallbackURL, p.CallbackQueue = wf.Callback.URL, wf.Callback.Queue
	}
	for _, s := range wf.Steps {
		p.Steps = append(p.Steps, nightshift.WorkflowStepSpec{Name: s.Name, Kind: s.Kind, RawArgs: s.Args, DependsOn: s.DependsOn, OnFailure: s.OnFailure})
	}
	return p, nil
}

func printWorkflow(out io.Writer, w *record.Workflow) error {
	tw := tabwriter.NewWriter(out, 0, 4, 1, ' ', 0)
	fmt.Fprintf(tw, "workflow:\t%s\n", w.WorkflowID)
	if w.Name != "" {
		fmt.Fprintf(tw, "name:\t%s\n", w.Name)
	}
	fmt.Fprintf(tw, "state:\t%s\n", w.State)
	fmt.Fprintf(tw, "created:\t%s\n", fmtTime(w.CreatedAt))
	fmt.Fprintf(tw, "finished:\t%s\n", fmtTime(w.FinishedAt))
	if err := tw.Flush(); err != nil {
		return err
	}
	tw = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STEP\tKIND\tSTATE\tDEPENDS ON\tJOB")
	for _, s := range w.Steps {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.Name, s.Kind, s.State, strings.Join(s.DependsOn, ","), s.JobID)
	}
	return tw.Flush()
}
