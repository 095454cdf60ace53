package worker

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/storage"
)

// Main is `handler worker [flags]`: it parses args (each flag falling back to its
// NIGHTSHIFT_WORKER_* setting), builds the app with newApp and runs it until ctx ends
// (the caller cancels ctx on SIGTERM and SIGINT). It returns the process exit code: 0
// after --help or a clean drain, 1 on a configuration error (the message names the flag
// or setting) or when the worker has to stop.
func Main(ctx context.Context, args []string, newApp func() (*nightshift.App, error)) int {
	log := slog.New(slog.NewJSONHandler(os.Stdout, nil))
	opts, err := ParseArgs(args, getenvOS, os.Stdout)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err == nil {
		var app *nightshift.App
		if app, err = newApp(); err == nil {
			err = Run(ctx, app, opts)
		}
	}
	if err != nil {
		log.Error("worker failed", "error", err.Error())
		fmt.Fprintln(os.Stderr, "worker:", err)
		return 1
	}
	return 0
}

// usage is the text of `handler worker --help` before the flag list.
const usage = `Usage: handler worker [flags]

Consumes the app's job queues and fires its timers without a Functions host, with the
host's queue semantics and the same job handler. Storage settings are the function app's
(AzureWebJobsStorage, or AzureWebJobsStorage__accountName with an identity). GET /healthz
and /readyz are served on --health-addr. SIGTERM or SIGINT drains: /readyz answers 503,
no new messages are taken, in-flight jobs finish within --drain-timeout and the messages
of jobs still running then are released for another worker; the exit code is 0.

Flags (each falls back to the setting named in brackets):
`

// ParseArgs reads the worker's flags from args, each defaulting to its setting read with
// getenv; --help writes the usage to out and returns flag.ErrHelp. A bad value is an
// error naming the flag or the setting.
func ParseArgs(args []string, getenv func(string) string, out io.Writer) (Options, error) {
	var o Options
	env, err := fromEnv(getenv)
	if err != nil {
		return o, err
	}
	fs := flag.NewFlagSet("handler worker", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprint(out, usage)
		fs.PrintDefaults()
	}
	var queues, hostJSON string
	fs.IntVar(&o.Concurrency, "concurrency", env.Concurrency, "messages in flight per queue; 0: host.json batchSize + newBatchThreshold, like the host ["+SettingConcurrency+"]")
	fs.StringVar(&o.HealthAddr, "health-addr", env.HealthAddr, "address of GET /healthz and /readyz; off serves none ["+SettingHealthAddr+"]")
	fs.DurationVar(&o.DrainTimeout, "drain-timeout", env.DrainTimeout, "how long in-flight jobs may finish after SIGTERM ["+SettingDrainTimeout+"]")
	fs.StringVar(&queues, "queues", strings.Join(env.Queues, ","), "comma-separated queues to consume, without the name prefix (each with its poison queue); default every job queue and its poison queue ["+SettingQueues+"]")
	fs.BoolVar(&o.NoTimers, "no-timers", env.NoTimers, "do not run the recurring jobs and the schedule sweeper ["+SettingTimers+"=false]")
	fs.StringVar(&hostJSON, "host-json", getenv(SettingHostJSON), "host.json to take the queue settings from; default the built-in copy of the repository's ["+SettingHostJSON+"]")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q (see handler worker --help)", fs.Arg(0))
	}
	switch {
	case o.Concurrency < 0:
		return o, fmt.Errorf("--concurrency %d: want 0 (host.json's budget) or more [%s]", o.Concurrency, SettingConcurrency)
	case o.DrainTimeout <= 0:
		return o, fmt.Errorf("--drain-timeout %s: want a positive duration such as 25s [%s]", o.DrainTimeout, SettingDrainTimeout)
	case o.HealthAddr == "":
		return o, fmt.Errorf("--health-addr is empty: want host:port, :port or off [%s]", SettingHealthAddr)
	}
	o.Queues = splitList(queues)
	if hostJSON != "" {
		if o.HostJSON, err = os.ReadFile(hostJSON); err != nil {
			return o, &storage.SettingError{Setting: SettingHostJSON, Problem: err.Error()}
		}
	}
	return o, nil
}

// fromEnv reads the NIGHTSHIFT_WORKER_* settings: the flags' defaults.
func fromEnv(getenv func(string) string) (Options, error) {
	o := Options{HealthAddr: DefaultHealthAddr, DrainTimeout: DefaultDrainTimeout}
	if v := strings.TrimSpace(getenv(SettingConcurrency)); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return o, &storage.SettingError{Setting: SettingConcurrency, Problem: fmt.Sprintf("%q is not a number of messages (0 or more)", v)}
		}
		o.Concurrency = n
	}
	if v := strings.TrimSpace(getenv(SettingHealthAddr)); v != "" {
		o.HealthAddr = v
	}
	if v := strings.TrimSpace(getenv(SettingDrainTimeout)); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return o, &storage.SettingError{Setting: SettingDrainTimeout, Problem: fmt.Sprintf("%q is not a positive duration such as 25s", v)}
		}
		o.DrainTimeout = d
	}
	o.Queues = splitList(getenv(SettingQueues))
	switch v := strings.ToLower(strings.TrimSpace(getenv(SettingTimers))); v {
	case "", "true", "1":
	case "false", "0":
		o.NoTimers = true
	default:
		return o, &storage.SettingError{Setting: SettingTimers, Problem: fmt.Sprintf("%q: want true or false", v)}
	}
	return o, nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
