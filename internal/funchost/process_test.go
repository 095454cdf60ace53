package funchost

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nightshift-jobs/nightshift/internal/testenv"
)

func TestProcess_1_3_ThreeErrorsStopHost(t *testing.T) {
	t.Parallel()
	a := newApp(t, testHostJSON{}.render(), map[string]string{"Work": queueFn("{{p}}-crash")})
	a.settings["TESTHANDLER_STARTUP"] = "crash"
	_, _, done := a.run(Options{})
	select {
	case err := <-done:
		if !errors.Is(err, ErrHandlerRestarts) {
			t.Fatalf("Run = %v, want ErrHandlerRestarts", err)
		}
		if !strings.Contains(err.Error(), "Exceeded http worker restart retry count. Shutting down Functions Host") {
			t.Errorf("error %q lacks the host's message", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("host did not stop after three handler crashes")
	}
	if n := strings.Count(a.logs.String(), "Started handler process"); n != 3 {
		t.Errorf("handler started %d times, want 3", n)
	}
}

func TestProcess_1_3_StartTimeoutIsAnError(t *testing.T) {
	t.Parallel()
	a := newApp(t, testHostJSON{}.render(), map[string]string{"Work": queueFn("{{p}}-hang")})
	a.settings["TESTHANDLER_STARTUP"] = "hang"
	_, _, done := a.run(Options{HandlerStartTimeout: 300 * time.Millisecond})
	select {
	case err := <-done:
		if !errors.Is(err, ErrHandlerRestarts) || !strings.Contains(a.logs.String(), "Initializing HttpWorker timed out.") {
			t.Fatalf("Run = %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("host did not stop")
	}
}

func TestProcess_1_3_CrashedHandlerRestartedAndMessageRetried(t *testing.T) {
	t.Parallel()
	a := newApp(t, testHostJSON{}.render(), map[string]string{"Work": queueFn("{{p}}-crash1")})
	q := a.createQueue("{{p}}-crash1")
	a.run(Options{})
	a.enqueue(q, `{"key":"c","do":"crash","n":2}`)
	testenv.WaitFor(t, 30*time.Second, "the retried delivery", func() bool { return len(a.records_("c")) == 2 })
	testenv.WaitFor(t, 10*time.Second, "the message to be deleted", func() bool { return approxCount(t, q) == 0 })
	recs := a.records_("c")
	if recs[0].PID == recs[1].PID {
		t.Error("the second delivery ran in the crashed process")
	}
}

func TestProcess_1_2_ConsoleRelay(t *testing.T) {
	t.Parallel()
	a := newApp(t, testHostJSON{}.render(), map[string]string{"Work": queueFn("{{p}}-console")})
	q := a.createQueue("{{p}}-console")
	a.run(Options{})
	a.enqueue(q, `{"key":"p","do":"print","line":"marker-line-42"}`)
	testenv.WaitFor(t, 20*time.Second, "the printed line", func() bool { return strings.Count(a.logs.String(), "marker-line-42") == 2 })
	log := a.logs.String()
	for _, want := range []string{
		`level=INFO msg="testhandler: listening on port`,                // stdout → Information
		`level=WARN msg="testhandler: warning: this is a test handler"`, // stderr with "warn" → Warning
		`level=ERROR msg="testhandler: an error line"`,                  // other stderr → Error
		`level=INFO msg=marker-line-42`,
		`level=ERROR msg=marker-line-42`,
	} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %s", want)
		}
	}
}

func TestTimeout_1_10_TimedOutInvocationFailsAndHandlerRestarts(t *testing.T) {
	t.Parallel()
	a := newApp(t, testHostJSON{MaxDequeueCount: 1, FunctionTimeout: "00:00:01"}.render(), map[string]string{"Work": queueFn("{{p}}-slow")})
	q := a.createQueue("{{p}}-slow")
	a.run(Options{})
	a.enqueue(q, `{"key":"slow","do":"sleep","ms":20000}`)
	testenv.WaitFor(t, 20*time.Second, "the timed-out message in the poison queue", func() bool { return len(peekAll(t, a.queue("{{p}}-slow-poison"))) == 1 })
	if !a.logs.Contains("A function timeout has occurred. Restarting worker process executing invocationId") {
		t.Error("missing the timeout log line")
	}
	a.enqueue(q, `{"key":"after","do":"ok"}`)
	testenv.WaitFor(t, 20*time.Second, "the next message", func() bool { return len(a.records_("after")) == 1 })
	if a.records_("after")[0].PID == a.records_("slow")[0].PID {
		t.Error("the handler was not restarted after the timeout")
	}
}

func TestConfig_1_1_ExecutableArgumentsDirectories(t *testing.T) {
	dir := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(dir, "bin"), 0o755))
	must(t, os.WriteFile(filepath.Join(dir, "bin", "h"), []byte("#!/bin/sh\n"), 0o755))
	must(t, os.WriteFile(filepath.Join(dir, "host.json"), []byte(`{"version":"2.0","customHandler":{"description":{
		"defaultExecutablePath":"%EXE%","workerDirectory":"bin","workingDirectory":"work",
		"arguments":["--a=%A%","--b=%UNSET%x","%UNSET%"]}}}`), 0o644))
	env := map[string]string{"EXE": "h", "A": "1"}
	cfg, err := loadHostConfig(dir, func(k string) string { return env[k] }, false, func(string, ...any) {})
	must(t, err)
	if cfg.Handler.Path != filepath.Join(dir, "bin", "h") {
		t.Errorf("Path %q: want it resolved against workerDirectory", cfg.Handler.Path)
	}
	if cfg.Handler.Dir != filepath.Join(dir, "work") {
		t.Errorf("Dir %q", cfg.Handler.Dir)
	}
	if strings.Join(cfg.Handler.Args, "|") != "--a=1|--b=x|" {
		t.Errorf("Args %q: want %%VAR%% expanded and unresolved ones removed", cfg.Handler.Args)
	}
	// Not found under workerDirectory: left as-is (a command on PATH).
	env["EXE"] = "sh"
	cfg, err = loadHostConfig(dir, func(k string) string { return env[k] }, false, func(string, ...any) {})
	must(t, err)
	if cfg.Handler.Path != "sh" {
		t.Errorf("Path %q, want sh", cfg.Handler.Path)
	}
	// §2.1 defaults and Development.
	if cfg.Queues.MaxPollingInterval != time.Minute || cfg.Queues.BatchSize != 16 || cfg.Queues.MaxDequeueCount != 5 || !cfg.Queues.Base64 || cfg.FunctionTimeout != 30*time.Minute {
		t.Errorf("defaults: %+v timeout %s", cfg.Queues, cfg.FunctionTimeout)
	}
	cfg, _ = loadHostConfig(dir, func(k string) string { return env[k] }, true, func(string, ...any) {})
	if cfg.Queues.MaxPollingInterval != 2*time.Second {
		t.Errorf("Development maxPollingInterval %s, want 2s", cfg.Queues.MaxPollingInterval)
	}
}

func TestConfig_5_ValidationErrorsNameFileAndField(t *testing.T) {
	host := `{"version":"2.0","customHandler":{"description":{"defaultExecutablePath":"handler"}}}`
	cases := []struct {
		name, host, fn, want string
	}{
		{"unknown binding", host, `{"bindings":[{"name":"m","type":"queueTrigger","direction":"in","queueName":"jobs"},{"name":"o","type":"cosmosDB","direction":"out"}]}`, "The binding type(s) 'cosmosDB' were not found"},
		{"two triggers", host, `{"bindings":[{"name":"m","type":"queueTrigger","direction":"in","queueName":"jobs"},{"name":"t","type":"timerTrigger","direction":"in","schedule":"0 * * * * *"}]}`, "bindings[1]: a second trigger"},
		{"no trigger", host, `{"bindings":[{"name":"o","type":"blob","direction":"out","path":"c/x"}]}`, "no trigger binding"},
		{"bad queue name", host, `{"bindings":[{"name":"m","type":"queueTrigger","direction":"in","queueName":"Bad_Name"}]}`, `bindings[0].queueName: "bad_name" is not a valid queue name`},
		{"unset queue setting", host, `{"bindings":[{"name":"m","type":"queueTrigger","direction":"in","queueName":"%NOPE%"}]}`, "'%NOPE%' does not resolve to a value"},
		{"bad schedule", host, `{"bindings":[{"name":"t","type":"timerTrigger","direction":"in","schedule":"every minute"}]}`, "bindings[0].schedule: The schedule expression 'every minute' was not recognized"},
		{"duplicate names", host, `{"bindings":[{"name":"m","type":"queueTrigger","direction":"in","queueName":"jobs"},{"name":"M","type":"blob","direction":"out","path":"c/x"}]}`, "is used twice"},
		{"blob path", host, `{"bindings":[{"name":"m","type":"queueTrigger","direction":"in","queueName":"jobs"},{"name":"o","type":"blob","direction":"out","path":"nocontainer"}]}`, `bindings[1].path`},
		{"bad json", host, `{"bindings":[`, "not valid JSON"},
		{"no exe", `{"version":"2.0","customHandler":{"description":{}}}`, `{"bindings":[]}`, "customHandler.description.defaultExecutablePath: WorkerDescription DefaultExecutablePath cannot be empty"},
		{"bad timeout", `{"version":"2.0","functionTimeout":"soon","customHandler":{"description":{"defaultExecutablePath":"h"}}}`, `{}`, "functionTimeout"},
		{"bad encoding", `{"version":"2.0","customHandler":{"description":{"defaultExecutablePath":"h"}},"extensions":{"queues":{"messageEncoding":"utf8"}}}`, `{}`, "extensions.queues.messageEncoding"},
		{"batch size", `{"version":"2.0","customHandler":{"description":{"defaultExecutablePath":"h"}},"extensions":{"queues":{"batchSize":33}}}`, `{}`, "extensions.queues.batchSize: 33: expected 1–32"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			must(t, os.WriteFile(filepath.Join(dir, "host.json"), []byte(c.host), 0o644))
			must(t, os.MkdirAll(filepath.Join(dir, "Fn"), 0o755))
			must(t, os.WriteFile(filepath.Join(dir, "Fn", "function.json"), []byte(c.fn), 0o644))
			_, err := New(dir, Options{Settings: map[string]string{"AzureWebJobsStorage": "UseDevelopmentStorage=true"}, Getenv: func(string) string { return "" }})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("New = %v\nwant an error containing %q", err, c.want)
			}
			var ce *ConfigError
			if !errors.As(err, &ce) || !strings.HasSuffix(ce.File, ".json") {
				t.Errorf("error %v does not name the file", err)
			}
		})
	}
}

func TestHost_3_3_LocalHostID(t *testing.T) {
	id := LocalHostID("/home/user/app")
	if len(id) > 32 || id != strings.ToLower(id) || strings.HasSuffix(id, "-") || !strings.Contains(id, "-") {
		t.Errorf("LocalHostID = %q", id)
	}
	if LocalHostID("/home/user/app") != id || LocalHostID("/home/user/other") == id {
		t.Error("host id is not a stable function of the app root")
	}
}

func TestBackoff_2_2(t *testing.T) {
	b := &backoff{min: 100 * time.Millisecond, max: 2 * time.Second}
	prev := time.Duration(0)
	var seq []time.Duration
	for i := 0; i < 12; i++ {
		d := b.next(false)
		seq = append(seq, d)
		if d < prev || d > 2*time.Second {
			t.Fatalf("sequence %v not non-decreasing within the cap", seq)
		}
		prev = d
	}
	// ~200ms, ~300ms, ~500ms: 100ms + U(0.8,1.2)·2^(k-1)·100ms.
	if seq[0] < 180*time.Millisecond || seq[0] > 220*time.Millisecond || seq[2] < 420*time.Millisecond || seq[2] > 580*time.Millisecond {
		t.Errorf("sequence %v", seq)
	}
	if seq[11] != 2*time.Second {
		t.Errorf("not capped: %v", seq)
	}
	if d := b.next(true); d != 100*time.Millisecond {
		t.Errorf("after messages were found: %s, want 100ms", d)
	}
	if d := b.next(false); d > 220*time.Millisecond {
		t.Errorf("exponent not reset: %s", d)
	}
}

func TestTimer_3_1_ScheduleForms(t *testing.T) {
	cases := []struct {
		expr     string
		interval time.Duration
		monitor  bool // whether the monitor stays on (§3.3)
		err      bool
	}{
		{"0 */5 * * * *", 0, true, false},
		{"*/5 * * * *", 0, true, false},
		{"* * * * * *", 0, false, false}, // fires every second: monitor off
		{"00:00:30", 30 * time.Second, false, false},
		{"01:00:00", time.Hour, true, false},
		{"1.00:00:00", 24 * time.Hour, true, false},
		{"24:00:00", 0, false, true}, // ambiguous in .NET (§3.1): rejected, use 1.00:00:00
		{"every minute", 0, false, true},
	}
	for _, c := range cases {
		s, err := parseSchedule(c.expr)
		if (err != nil) != c.err {
			t.Errorf("%q: err %v", c.expr, err)
			continue
		}
		if c.err {
			continue
		}
		if s.interval != c.interval || (s.cron == nil) != (c.interval > 0) {
			t.Errorf("%q: %+v", c.expr, s)
		}
		if s.disablesMonitor() == c.monitor {
			t.Errorf("%q: disablesMonitor = %v", c.expr, s.disablesMonitor())
		}
	}
	// %AppSetting% schedules resolve from the settings.
	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, "host.json"), []byte(`{"version":"2.0","customHandler":{"description":{"defaultExecutablePath":"h"}}}`), 0o644))
	must(t, os.MkdirAll(filepath.Join(dir, "T"), 0o755))
	must(t, os.WriteFile(filepath.Join(dir, "T", "function.json"), []byte(timerFn("%SCHED%", false, true)), 0o644))
	h, err := New(dir, Options{Settings: map[string]string{"AzureWebJobsStorage": "UseDevelopmentStorage=true", "SCHED": "0 0 9 * * Mon-Fri"}, Getenv: func(string) string { return "" }})
	must(t, err)
	if got := h.Functions()[0].schedule.expr; got != "0 0 9 * * Mon-Fri" {
		t.Errorf("schedule %q", got)
	}
}
