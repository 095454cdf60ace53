package funchost

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/internal/appfolder"
	"github.com/nightshift-jobs/nightshift/internal/testenv"
	jobrecord "github.com/nightshift-jobs/nightshift/record"
	"github.com/nightshift-jobs/nightshift/storage"
)

// e2eApp is an app folder assembled from the repository's host.json and functions/ with
// the e2e handler (real nightshift handler code, test job kinds), on a fresh prefix.
type e2eApp struct {
	*app
	client *nightshift.Client
	runs   string // E2E_DIR
}

var fastQueues = regexp.MustCompile(`"maxPollingInterval": "[^"]*"|"visibilityTimeout": "[^"]*"`)

func newE2EApp(t *testing.T, withTick string) *e2eApp {
	t.Helper()
	cs := testenv.ConnectionString(t)
	bin := testenv.BuildBinary(t, "./internal/funchost/internal/e2ehandler")
	prefix := testenv.Prefix(t)
	dir := t.TempDir()
	ctx := context.Background()
	must(t, appfolder.Assemble(ctx, dir, appfolder.Options{RepoRoot: testenv.RepoRoot(), HandlerBinary: bin, NamePrefix: prefix}))
	// The repository's host.json, with test-speed polling and retry visibility.
	hj, err := os.ReadFile(filepath.Join(dir, "host.json"))
	must(t, err)
	hj = fastQueues.ReplaceAllFunc(hj, func(m []byte) []byte {
		if strings.Contains(string(m), "maxPollingInterval") {
			return []byte(`"maxPollingInterval": "00:00:00.500"`)
		}
		return []byte(`"visibilityTimeout": "00:00:01"`)
	})
	must(t, os.WriteFile(filepath.Join(dir, "host.json"), hj, 0o644))
	if withTick != "" {
		must(t, os.MkdirAll(filepath.Join(dir, "Tick"), 0o755))
		must(t, os.WriteFile(filepath.Join(dir, "Tick", "function.json"), []byte(timerFn(withTick, false, true)), 0o644))
	}
	a := &e2eApp{app: &app{t: t, dir: dir, records: t.TempDir(), prefix: prefix, logs: &logBuffer{}}, runs: t.TempDir()}
	a.settings = localTemplateSettings(t)
	a.settings[storage.SettingStorage] = cs
	a.settings[storage.SettingNamePrefix] = prefix
	a.settings["E2E_DIR"] = a.runs
	c, err := storage.FromEnv(func(k string) string { return a.settings[k] }, nil)
	must(t, err)
	must(t, c.Ensure(ctx))
	a.clients = c
	a.client = nightshift.NewClient(c, nil)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("host log (last 20000 bytes):\n%s", tail(a.logs.String(), 20000))
		}
	})
	return a
}

// localTemplateSettings are the app settings of local/local.settings.template.json (the
// repository's functions reference some, e.g. %NIGHTSHIFT_SCHEDULE_MAINTENANCE%).
func localTemplateSettings(t testing.TB) map[string]string {
	t.Helper()
	vals, err := LoadLocalSettings(filepath.Join(testenv.RepoRoot(), "local", "local.settings.template.json"))
	must(t, err)
	return vals
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}

// run starts a local host on the app with its own HTTP address (the repository's
// functions include HTTP ones).
func (a *e2eApp) run(opts Options) (*Host, context.CancelFunc, <-chan error) {
	a.t.Helper()
	if opts.HTTPAddr == "" {
		opts.HTTPAddr = freeAddr(a.t)
	}
	return a.app.run(opts)
}

func (a *e2eApp) enqueue(kind, args string) string {
	a.t.Helper()
	res, err := a.client.EnqueueRaw(context.Background(), kind, json.RawMessage(args), nil)
	must(a.t, err)
	return res.JobID
}

func (a *e2eApp) wait(id string, timeout time.Duration) *jobrecord.Status {
	a.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	st, err := a.client.Wait(ctx, id, &nightshift.WaitOptions{MaxInterval: 200 * time.Millisecond})
	if err != nil && st == nil {
		a.t.Fatalf("wait for job %s: %v", id, err)
	}
	return st
}

func (a *e2eApp) runsOf(id string) int { return testenv.Runs(a.runs, id) }

func TestE2E_JobSucceedsWithResult(t *testing.T) {
	t.Parallel()
	a := newE2EApp(t, "")
	a.run(Options{})
	id := a.enqueue("e2e.noop", `{"n":7}`)
	st := a.wait(id, 30*time.Second)
	if st.State != jobrecord.StateSucceeded || st.Attempt != 1 {
		t.Fatalf("status %+v", st)
	}
	var res struct{ N int }
	must(t, a.client.Result(context.Background(), id, &res))
	if res.N != 7 {
		t.Errorf("result %+v", res)
	}
}

func TestE2E_FailingJobRetriedThenDeadLettered(t *testing.T) {
	t.Parallel()
	a := newE2EApp(t, "")
	a.run(Options{})
	id := a.enqueue("e2e.fail", `{}`)
	st := a.wait(id, 60*time.Second)
	if st.State != jobrecord.StateDead || st.Attempt != 3 || st.DeadLetter == "" {
		t.Fatalf("status %+v", st)
	}
	// RunDeadLetter writes the record when the poisoned envelope arrives on jobs-poison.
	var dl *jobrecord.DeadLetter
	testenv.WaitFor(t, 30*time.Second, "the dead-letter record", func() bool {
		var err error
		dl, err = a.client.DeadLetter(context.Background(), id)
		return err == nil
	})
	if dl.Reason != jobrecord.ReasonAttemptsExhausted || len(dl.Errors) != 3 || dl.JobID != id {
		t.Errorf("dead letter %+v", dl)
	}
	if n := a.runsOf(id); n != 3 {
		t.Errorf("ran %d times, want 3", n)
	}
}

func TestE2E_GarbageMessageDeadLettered(t *testing.T) {
	t.Parallel()
	a := newE2EApp(t, "")
	a.run(Options{})
	garbage := "this is not a job envelope"
	_, err := testenv.QueueService(a.clients).NewQueueClient(a.clients.Layout.JobsQueue()).EnqueueMessage(context.Background(), garbage, nil)
	must(t, err)
	var found *jobrecord.DeadLetter
	testenv.WaitFor(t, 60*time.Second, "a dead-letter record for the garbage message", func() bool {
		dls, err := a.client.DeadLetters(context.Background())
		if err != nil {
			return false
		}
		for _, d := range dls {
			if d.Raw == garbage {
				found = d
				return true
			}
		}
		return false
	})
	if found.Reason != jobrecord.ReasonUndecodable {
		t.Errorf("dead letter %+v", found)
	}
}

func TestE2E_HandlerKilledMidBatchLosesNothing(t *testing.T) {
	t.Parallel()
	a := newE2EApp(t, "")
	h, _, _ := a.run(Options{})
	const n = 20
	var ids []string
	for i := 0; i < n; i++ {
		ids = append(ids, a.enqueue("e2e.sleep", `{"ms":1500}`))
	}
	// Kill the handler (SIGKILL, the process we started) while jobs are running.
	testenv.WaitFor(t, 30*time.Second, "jobs to be running", func() bool {
		running := 0
		for _, id := range ids {
			if a.runsOf(id) > 0 {
				running++
			}
		}
		return running >= 4
	})
	w, err := h.workers.acquire(context.Background())
	must(t, err)
	must(t, syscall.Kill(w.cmd.Process.Pid, syscall.SIGKILL))
	var wg sync.WaitGroup
	errs := make(chan string, n)
	for _, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := a.wait(id, 90*time.Second)
			if st.State != jobrecord.StateSucceeded {
				errs <- fmt.Sprintf("job %s ended %s (%s)", id, st.State, st.LastError)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if !a.logs.Contains("Handler process exited unexpectedly") {
		t.Error("the kill was not noticed")
	}
}

func TestE2E_TwoHostsOneQueue(t *testing.T) {
	t.Parallel()
	a := newE2EApp(t, "")
	a.run(Options{})
	a.run(Options{})
	const n = 30
	var ids []string
	for i := 0; i < n; i++ {
		ids = append(ids, a.enqueue("e2e.noop", fmt.Sprintf(`{"n":%d}`, i)))
	}
	for _, id := range ids {
		if st := a.wait(id, 60*time.Second); st.State != jobrecord.StateSucceeded {
			t.Errorf("job %s: %+v", id, st)
		}
	}
	pids := map[string]bool{}
	for _, id := range ids {
		if r := a.runsOf(id); r != 1 {
			t.Errorf("job %s ran %d times", id, r)
		}
		b, _ := os.ReadFile(filepath.Join(a.runs, id))
		pids[strings.TrimSpace(string(b))] = true
	}
	t.Logf("jobs ran in %d handler processes", len(pids))
}

func TestE2E_TimerEnqueuesOnSchedule(t *testing.T) {
	t.Parallel()
	a := newE2EApp(t, "*/2 * * * * *")
	a.run(Options{HostID: a.prefix})
	var jobs []*jobrecord.Status
	testenv.WaitFor(t, 30*time.Second, "two timer-enqueued jobs to succeed", func() bool {
		var err error
		jobs, err = a.client.ListJobs(context.Background(), nightshift.JobFilter{})
		if err != nil {
			return false
		}
		done := 0
		for _, j := range jobs {
			if j.State == jobrecord.StateSucceeded && j.Kind == "e2e.noop" {
				done++
			}
		}
		return done >= 2
	})
}
