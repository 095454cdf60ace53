package worker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nightshift-jobs/nightshift/internal/testenv"
	"github.com/nightshift-jobs/nightshift/record"
	"github.com/nightshift-jobs/nightshift/worker"
)

func TestDefaultHostJSONIsTheRepositorys(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "host.json"))
	must(t, err)
	if string(b) != worker.DefaultHostJSON {
		t.Fatalf("worker.DefaultHostJSON differs from host.json; copy host.json into worker/hostjson.go")
	}
}

func TestHelp(t *testing.T) {
	bin := testenv.BuildBinary(t, handlerPkg)
	out, err := exec.Command(bin, "worker", "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("worker --help: %v\n%s", err, out)
	}
	for _, want := range []string{"Usage: handler worker", "-concurrency", "-health-addr", "-drain-timeout", "-queues", "-no-timers", "-host-json",
		worker.SettingConcurrency, worker.SettingHealthAddr, worker.SettingDrainTimeout, worker.SettingQueues, worker.SettingTimers, worker.SettingHostJSON} {
		if !strings.Contains(string(out), want) {
			t.Errorf("--help does not mention %s:\n%s", want, out)
		}
	}
}

// TestConfigErrorExits1NamingTheSetting: a bad setting or flag stops the worker before it
// takes any message, with exit code 1 and a message naming it.
func TestConfigErrorExits1NamingTheSetting(t *testing.T) {
	t.Parallel()
	f := newFleet(t, "", fastHostJSON(0, 0))
	for _, c := range []struct {
		name string
		args []string
		env  []string
		want string
	}{
		{"drain timeout", nil, []string{worker.SettingDrainTimeout + "=soon"}, worker.SettingDrainTimeout},
		{"concurrency", []string{"--concurrency", "-2"}, nil, "--concurrency"},
		{"timers", nil, []string{worker.SettingTimers + "=maybe"}, worker.SettingTimers},
		{"queues", []string{"--queues", "jobs,nosuch"}, nil, worker.SettingQueues},
		{"host.json", []string{"--host-json", filepath.Join(t.TempDir(), "missing.json")}, nil, worker.SettingHostJSON},
		{"storage", nil, []string{"AzureWebJobsStorage="}, "AzureWebJobsStorage"},
		{"schedule", nil, []string{"NIGHTSHIFT_SCHEDULE_TICK="}, "NIGHTSHIFT_SCHEDULE_TICK"},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := f.start(append([]string{"worker", "--health-addr", "127.0.0.1:0"}, c.args...), c.env...)
			if code := p.wait(); code != 1 {
				t.Fatalf("exit code %d, want 1\n%s", code, p.stderr.String())
			}
			if !strings.Contains(p.stderr.String(), c.want) {
				t.Errorf("stderr does not name %s:\n%s", c.want, p.stderr.String())
			}
		})
	}
}

// blockJob enqueues a test.block job and returns its id and the files it starts on and
// waits for.
func (f *fleet) blockJob() (id, started, release string) {
	dir := f.t.TempDir()
	started, release = filepath.Join(dir, "started"), filepath.Join(dir, "release")
	args, _ := json.Marshal(map[string]string{"started": started, "release": release})
	return f.enqueue("test.block", string(args), ""), started, release
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

// TestDrain_InFlightJobFinishes: on SIGTERM /readyz goes 503 at once, no new message is
// taken, and the job in flight finishes (well within the drain timeout); exit code 0.
func TestDrain_InFlightJobFinishes(t *testing.T) {
	t.Parallel()
	f := newFleet(t, "", fastHostJSON(0, 0))
	w := f.startWorker([]string{"--drain-timeout", "2m", "--no-timers", "--concurrency", "3"})
	w.waitReady()
	if l := logLines(w.logs.String(), "worker starting"); len(l) != 1 || l[0]["concurrency"] != 3.0 {
		t.Errorf("worker starting log %v, want concurrency 3 from --concurrency", l)
	}
	if got := w.get("/healthz"); got != http.StatusOK {
		t.Fatalf("/healthz %d", got)
	}
	id, started, release := f.blockJob()
	testenv.WaitFor(t, 60*time.Second, "the job to start", func() bool { return exists(started) })
	w.term()
	testenv.WaitFor(t, 30*time.Second, "/readyz 503 while draining", func() bool { return w.get("/readyz") == http.StatusServiceUnavailable })
	if got := w.get("/healthz"); got != http.StatusOK {
		t.Errorf("/healthz %d while draining, want 200", got)
	}
	later := f.enqueue("test.noop", `{"n":1}`, "")
	must(t, os.WriteFile(release, nil, 0o644))
	if code := w.wait(); code != 0 {
		t.Fatalf("exit code %d after the drain, want 0", code)
	}
	st := f.wait(id)
	if st.State != record.StateSucceeded || st.Attempt != 1 {
		t.Fatalf("job %s: %s attempt %d, want succeeded on attempt 1", id, st.State, st.Attempt)
	}
	if pids := f.runPIDs(id); !slices.Equal(pids, []int{w.pid()}) {
		t.Errorf("job ran in %v, want once in the draining worker %d", pids, w.pid())
	}
	if n := len(f.runPIDs(later)); n != 0 {
		t.Errorf("a job enqueued during the drain ran %d times; a draining worker takes no new message", n)
	}
}

// TestDrain_LongJobIsReleased: a job still running at the drain deadline is released
// (its message visible again at once, its attempt not failed); the worker exits 0 and
// another worker finishes the job.
func TestDrain_LongJobIsReleased(t *testing.T) {
	t.Parallel()
	f := newFleet(t, "", fastHostJSON(0, 0))
	a := f.startWorker([]string{"--drain-timeout", "300ms", "--no-timers"})
	id, started, release := f.blockJob()
	testenv.WaitFor(t, 60*time.Second, "the job to start in worker A", func() bool { return exists(started) })
	a.term()
	if code := a.wait(); code != 0 {
		t.Fatalf("worker A exit code %d, want 0", code)
	}
	if len(logLines(a.logs.String(), "Released the message at the drain deadline; another consumer will take it")) != 1 {
		t.Fatalf("worker A did not log releasing the message")
	}
	st, _, err := f.clients.GetStatus(context.Background(), id)
	must(t, err)
	if st.State.Terminal() {
		t.Fatalf("job %s is %s after worker A stopped, want it unfinished", id, st.State)
	}
	b := f.startWorker([]string{"--no-timers"})
	testenv.WaitFor(t, 60*time.Second, "worker B to run the job", func() bool { return len(f.runPIDs(id)) == 2 })
	must(t, os.WriteFile(release, nil, 0o644))
	st = f.wait(id)
	if st.State != record.StateSucceeded || st.Attempt != 1 || len(st.Errors) != 0 {
		t.Fatalf("job %s: %s attempt %d errors %v, want succeeded on attempt 1 with no failed attempt", id, st.State, st.Attempt, st.Errors)
	}
	if pids := f.runPIDs(id); !slices.Equal(pids, []int{a.pid(), b.pid()}) {
		t.Errorf("job ran in %v, want worker A %d then worker B %d", pids, a.pid(), b.pid())
	}
	b.term()
	if code := b.wait(); code != 0 {
		t.Errorf("worker B exit code %d", code)
	}
}

// TestTwoWorkersFireEachOccurrenceOnce: two workers run the recurring job's timer under
// one singleton lease; every occurrence fires once and its job runs once.
func TestTwoWorkersFireEachOccurrenceOnce(t *testing.T) {
	t.Parallel()
	f := newFleet(t, "", fastHostJSON(0, 0))
	f.settings["NIGHTSHIFT_SCHEDULE_TICK"] = "*/1 * * * * *"
	a := f.startWorker(nil)
	b := f.startWorker(nil)
	occurrences := func() []string {
		entries, _ := os.ReadDir(f.runs)
		var ids []string
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), "cron-tick-") {
				ids = append(ids, e.Name())
			}
		}
		return ids
	}
	fires := func() []fire {
		return append(firesIn(a.logs.String(), fmt.Sprint("worker ", a.pid())), firesIn(b.logs.String(), fmt.Sprint("worker ", b.pid()))...)
	}
	testenv.WaitFor(t, 2*time.Minute, "6 occurrences to run", func() bool { return len(occurrences()) >= 6 })
	checkFires(t, fires(), 0) // while both run: one lease holder (a fire's log line may trail its job)
	a.term()
	b.term()
	if a.wait() != 0 || b.wait() != 0 {
		t.Fatalf("exit codes %d %d", a.code, b.code)
	}
	enqueued := enqueuedOnce(t, fires())
	if len(enqueued) < 6 {
		t.Fatalf("%d occurrences enqueued, want at least 6", len(enqueued))
	}
	for _, id := range occurrences() {
		if n := len(f.runPIDs(id)); n != 1 {
			t.Errorf("occurrence job %s ran %d times, want once", id, n)
		}
		if !enqueued[id] {
			t.Errorf("occurrence job %s ran without a logged fire", id)
		}
	}
}

// fire is one "recurring job fired" log line: which process, which occurrence job, and
// whether it enqueued the job or found it enqueued already.
type fire struct{ proc, id, outcome string }

// checkFires checks the singleton rule over the fires of a fleet whose processes all ran
// throughout: every fire came from one process (the lease holder), and each occurrence
// was enqueued by exactly one fire (enqueuedOnce). It wants at least min occurrences.
func checkFires(t *testing.T, fires []fire, min int) {
	t.Helper()
	procs := map[string]bool{}
	for _, f := range fires {
		procs[f.proc] = true
	}
	if len(procs) != 1 {
		t.Errorf("timers fired in %d processes (%v), want only the lease holder", len(procs), procs)
	}
	if n := len(enqueuedOnce(t, fires)); n < min {
		t.Fatalf("%d occurrences enqueued, want at least %d", n, min)
	}
}

// enqueuedOnce checks that each occurrence was enqueued by exactly one fire and returns
// the occurrences enqueued.
//
// A second fire mapping to an occurrence already enqueued ("duplicate", the claim in
// schedule/claim.go) can come from the lease holder itself: with the monitor off (a
// sub-minute schedule) the schedule feature takes the occurrence nearest the clock, and
// a fire running late on a loaded machine can land nearer the next one. That is the
// schedule feature's own at-most-one-job rule, in one process; it is logged, not failed.
func enqueuedOnce(t *testing.T, fires []fire) map[string]bool {
	t.Helper()
	enqueued := map[string]bool{}
	for _, f := range fires {
		if f.outcome != "enqueued" {
			t.Logf("occurrence %s fired again in %s: %s", f.id, f.proc, f.outcome)
			continue
		}
		if enqueued[f.id] {
			t.Errorf("occurrence %s was enqueued by two fires", f.id)
		}
		enqueued[f.id] = true
	}
	return enqueued
}

// firesIn returns the "recurring job fired" lines of a process's log (proc names it): the
// worker's own JSON lines, or the handler's lines the local host relays as console
// messages.
func firesIn(logs, proc string) []fire {
	var out []fire
	for _, l := range strings.Split(logs, "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) != nil {
			continue
		}
		if inner, ok := m["msg"].(string); ok && m["category"] == "Host.Function.Console" {
			m = nil
			_ = json.Unmarshal([]byte(inner), &m)
		}
		if m["msg"] == "recurring job fired" {
			id, _ := m["job_id"].(string)
			outcome, _ := m["outcome"].(string)
			out = append(out, fire{proc: proc, id: id, outcome: outcome})
		}
	}
	return out
}

// TestMixedFleetFiresEachOccurrenceOnce: the local Functions host and a worker with the
// same host id share the timers' singleton lease; each occurrence fires once between them.
func TestMixedFleetFiresEachOccurrenceOnce(t *testing.T) {
	t.Parallel()
	f := newFleet(t, "", fastHostJSON(0, 0))
	f.settings["NIGHTSHIFT_SCHEDULE_TICK"] = "*/1 * * * * *"
	lh := f.startLocalHost()
	w := f.startWorker(nil)
	fires := func() []fire {
		return append(firesIn(lh.logs.String(), "local host"), firesIn(w.logs.String(), fmt.Sprint("worker ", w.pid()))...)
	}
	fired := func() map[string]bool {
		ids := map[string]bool{}
		for _, f := range fires() {
			ids[f.id] = true
		}
		return ids
	}
	testenv.WaitFor(t, 2*time.Minute, "5 occurrences to fire", func() bool { return len(fired()) >= 5 })
	checkFires(t, fires(), 5) // while both run: one lease holder
	w.term()
	if code := w.wait(); code != 0 {
		t.Errorf("worker exit code %d", code)
	}
	lh.stop(t)
	if err := <-lh.done; err != nil {
		t.Errorf("local host: %v", err)
	}
}
