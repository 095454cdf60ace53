package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/envelope"
)

func init() { subcommands = append(subcommands, newEnqueueCmd) }

// newClient builds a client from the same settings the handler reads.
func newClient() (*nightshift.Client, error) {
	c, err := nightshift.NewClientFromEnv(os.Getenv)
	if err != nil {
		return nil, fmt.Errorf("storage settings: %w", err)
	}
	return c, nil
}

// printJSON writes v as indented JSON.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// fmtTime prints a time in UTC to the second, or "-".
func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func newEnqueueCmd() *cobra.Command {
	var (
		argsText, argsFile, runAt, metaKV              []string
		jobID, queue, dedupe, cbURL, cbQueue, priority string
		runIn, timeout                                 time.Duration
		maxAttempts                                    int
		asJSON                                         bool
	)
	cmd := &cobra.Command{
		Use:   "enqueue KIND",
		Short: "Put a job on the queue",
		Long: `enqueue puts a job of the given kind on the jobs queue and prints its id.

The args are JSON: --args '{"url":"…"}', --args-file args.json, or --args - (or
--args-file -) to read them from standard input. Without args the job gets null.

Args larger than 48 KiB are stored in Blob and the message carries a reference. With
--dedupe-key, the job is refused while another job holding the key has not ended.

Exit codes: 0 enqueued, 1 storage failure, job id already used or dedupe key held,
2 invalid arguments or options (nothing is sent).`,
		Example: `  nightshift enqueue http_fetch --args '{"url":"https://example.com"}'
  echo '{"blob":"in/data.csv"}' | nightshift enqueue csv_stats --args - --run-in 10m --json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, pos []string) error {
			raw, err := readArgs(cmd, argsText, argsFile)
			if err != nil {
				return usageError{err}
			}
			opts := &nightshift.EnqueueOptions{
				JobID: jobID, Queue: queue, RunIn: runIn, Timeout: timeout, MaxAttempts: maxAttempts,
				DedupeKey: dedupe, CallbackURL: cbURL, CallbackQueue: cbQueue,
			}
			if len(runAt) > 0 {
				t, err := time.Parse(time.RFC3339, runAt[0])
				if err != nil {
					return usageError{fmt.Errorf("--run-at %q is not an RFC 3339 time such as 2026-01-02T15:04:05Z", runAt[0])}
				}
				opts.RunAt = t
			}
			if len(metaKV) > 0 {
				opts.Meta = map[string]string{}
				for _, kv := range metaKV {
					k, v, ok := strings.Cut(kv, "=")
					if !ok || k == "" {
						return usageError{fmt.Errorf("--meta %q is not key=value", kv)}
					}
					opts.Meta[k] = v
				}
			}
			c, err := newClient()
			if err != nil {
				return err
			}
			if priority != "" {
				if queue != "" {
					return usageError{errors.New("give --queue or --priority, not both")}
				}
				p, err := nightshift.ParsePriority(priority)
				if err != nil {
					return usageError{err}
				}
				if opts.Queue, err = c.PriorityQueue(p); err != nil {
					return usageError{err}
				}
			}
			res, err := c.EnqueueRaw(cmd.Context(), pos[0], raw, opts)
			if err != nil {
				var fe *envelope.FieldError
				var se *envelope.SizeError
				if errors.As(err, &fe) || errors.As(err, &se) || errors.Is(err, nightshift.ErrPayloadTooLarge) {
					return usageError{err}
				}
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), res)
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "enqueued job %s (kind %s) on queue %s\n", res.JobID, res.Kind, res.Queue)
			if !res.RunAt.IsZero() {
				fmt.Fprintf(out, "runs at %s\n", fmtTime(res.RunAt))
			}
			fmt.Fprintf(out, "follow it: nightshift wait %s\n", res.JobID)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&argsText, "args", nil, "job args as JSON text (- reads standard input)")
	f.StringArrayVar(&argsFile, "args-file", nil, "file holding the job args as JSON (- for standard input)")
	f.StringVar(&jobID, "job-id", "", "job id (default: a new time-sortable id)")
	f.StringVar(&queue, "queue", "", "queue to put the job on (default: the jobs queue)")
	f.StringVar(&priority, "priority", "", "high, normal or low: the queue of that priority (instead of --queue)")
	f.DurationVar(&runIn, "run-in", 0, "run the job after this delay (at most 7 days), e.g. 10m")
	f.StringArrayVar(&runAt, "run-at", nil, "run the job at this RFC 3339 time (at most 7 days ahead)")
	f.DurationVar(&timeout, "timeout", 0, "per-attempt timeout (default: the kind's)")
	f.IntVar(&maxAttempts, "max-attempts", 0, "maximum attempts (default: the kind's)")
	f.StringVar(&dedupe, "dedupe-key", "", "refuse the job while another job with this key is pending or running")
	f.StringVar(&cbURL, "callback-url", "", "HTTPS webhook to call when the job succeeds or is dead")
	f.StringVar(&cbQueue, "callback-queue", "", "queue to send a message to when the job succeeds or is dead")
	f.StringArrayVar(&metaKV, "meta", nil, "metadata key=value (repeatable)")
	f.BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}

// readArgs returns the job args from --args or --args-file ("-" = standard input).
func readArgs(cmd *cobra.Command, text, file []string) (json.RawMessage, error) {
	if len(text)+len(file) > 1 {
		return nil, errors.New("give the args once: --args or --args-file")
	}
	var data []byte
	var from string
	switch {
	case len(text) == 1 && text[0] != "-":
		data, from = []byte(text[0]), "--args"
	case len(text) == 1 || (len(file) == 1 && file[0] == "-"):
		b, err := io.ReadAll(io.LimitReader(cmd.InOrStdin(), 1<<20))
		if err != nil {
			return nil, fmt.Errorf("reading args from standard input: %w", err)
		}
		data, from = b, "standard input"
	case len(file) == 1:
		b, err := os.ReadFile(file[0])
		if err != nil {
			return nil, fmt.Errorf("--args-file: %w", err)
		}
		data, from = b, file[0]
	default:
		return nil, nil
	}
	if strings.TrimSpace(string(data)) == "" {
		return nil, fmt.Errorf("the args from %s are empty; expected JSON such as {\"key\":\"value\"}", from)
	}
	if !json.Valid(data) {
		var v any
		err := json.Unmarshal(data, &v)
		return nil, fmt.Errorf("the args from %s are not valid JSON: %v", from, err)
	}
	return json.RawMessage(data), nil
}
