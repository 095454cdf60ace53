package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/record"
)

func init() { subcommands = append(subcommands, newWaitCmd) }

// Exit codes of `nightshift wait` (docs/client.md).
const (
	exitWaitDead      = 1
	exitWaitCancelled = 3
	exitWaitTimedOut  = 4
)

func jsonRaw(b []byte) json.RawMessage { return json.RawMessage(b) }

// isTerminal reports whether w is a terminal (a character device).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// progress shows what a wait is doing on stderr: a spinner line rewritten in place on a
// terminal, else a plain line whenever the state changes and every plainEvery otherwise.
type progress struct {
	w          io.Writer
	tty        bool
	id         string
	start      time.Time
	plainEvery time.Duration
	frame      int
	last       string
	lastPrint  time.Time
}

var spinner = []string{"|", "/", "-", "\\"}

func (p *progress) describe(st *record.Status) string {
	if st == nil {
		return "no status yet"
	}
	s := string(st.State)
	if st.Attempt > 0 {
		s += fmt.Sprintf(", attempt %d", st.Attempt)
		if st.MaxAttempts > 0 {
			s += fmt.Sprintf(" of %d", st.MaxAttempts)
		}
	}
	if st.State == record.StateRunning && st.Progress != nil {
		s += ", " + fmtProgress(st.Progress)
	}
	if st.State == record.StateRetrying && !st.NextRunAt.IsZero() {
		s += ", next run " + fmtTime(st.NextRunAt)
	}
	return s
}

func (p *progress) update(st *record.Status, now time.Time) {
	d := p.describe(st)
	elapsed := now.Sub(p.start).Round(time.Second)
	if p.tty {
		p.frame++
		fmt.Fprintf(p.w, "\r\033[K%s job %s: %s (%s)", spinner[p.frame%len(spinner)], p.id, d, elapsed)
		p.last = d
		return
	}
	if d != p.last || now.Sub(p.lastPrint) >= p.plainEvery {
		fmt.Fprintf(p.w, "job %s: %s (%s elapsed)\n", p.id, d, elapsed)
		p.last, p.lastPrint = d, now
	}
}

func (p *progress) done() {
	if p.tty {
		fmt.Fprint(p.w, "\r\033[K")
	}
}

// waitTimedOut is the error for --timeout passing before the job ended.
func waitTimedOut(id string, timeout time.Duration, latest *record.Status) error {
	state := "it has no status yet"
	if latest != nil {
		state = "it is " + string(latest.State)
	}
	return exitError{exitWaitTimedOut, fmt.Errorf("job %s did not end within %s (%s)", id, timeout, state)}
}

// reportWaitEnd prints the final status and turns how the job ended into the exit code.
func reportWaitEnd(out io.Writer, id string, st *record.Status, asJSON bool) error {
	if asJSON {
		if err := printJSON(out, st); err != nil {
			return err
		}
	} else {
		printStatus(out, st)
	}
	switch st.State {
	case record.StateSucceeded:
		return nil
	case record.StateCancelled:
		return exitError{exitWaitCancelled, fmt.Errorf("job %s was cancelled", id)}
	default:
		msg := fmt.Sprintf("job %s is dead", id)
		if st.LastError != "" {
			msg += ": " + firstLine(st.LastError)
		}
		return exitError{exitWaitDead, errors.New(msg)}
	}
}

func newWaitCmd() *cobra.Command {
	var (
		timeout time.Duration
		asJSON  bool
		quiet   bool
	)
	cmd := &cobra.Command{
		Use:   "wait ID",
		Short: "Wait for a job to end and report how it ended",
		Long: `wait polls the job's status (from 100 ms, growing to 2 s) until it succeeds, is dead or is
cancelled, showing progress on standard error: a spinner line on a terminal, plain lines
otherwise (on every change, and every 10 s). The final status is printed on standard output.

Exit codes:
  0  the job succeeded
  1  the job is dead (or storage failed)
  2  usage error
  3  the job was cancelled
  4  --timeout passed before the job ended (it may still end later)`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, pos []string) error {
			id := pos[0]
			c, err := newClient()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, timeout)
				defer cancel()
			}
			stderr := cmd.ErrOrStderr()
			p := &progress{w: stderr, tty: isTerminal(stderr), id: id, start: time.Now(), plainEvery: 10 * time.Second}
			var tick <-chan time.Time
			var latest *record.Status
			updates := make(chan *record.Status, 16)
			if !quiet && p.tty {
				t := time.NewTicker(150 * time.Millisecond)
				defer t.Stop()
				tick = t.C
			}
			type result struct {
				st  *record.Status
				err error
			}
			done := make(chan result, 1)
			go func() {
				st, err := c.Wait(ctx, id, &nightshift.WaitOptions{Progress: func(st *record.Status) {
					select {
					case updates <- st:
					default:
					}
				}})
				done <- result{st, err}
			}()
			var res result
		loop:
			for {
				select {
				case st := <-updates:
					latest = st
					if !quiet {
						p.update(latest, time.Now())
					}
				case <-tick:
					p.update(latest, time.Now())
				case res = <-done:
					break loop
				}
			}
			if !quiet {
				p.done()
			}
			if res.err != nil {
				if errors.Is(res.err, context.DeadlineExceeded) && cmd.Context().Err() == nil {
					return waitTimedOut(id, timeout, latest)
				}
				return res.err
			}
			return reportWaitEnd(cmd.OutOrStdout(), id, res.st, asJSON)
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 0, "give up after this long (exit code 4); default: wait forever")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the final status as JSON")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "no progress on standard error")
	return cmd
}
