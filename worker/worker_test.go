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
	testenv.WaitFor(t, 2*time.Minute, "6 occurrences to run", func() bool { return len(occurrences()) >= 6 })
	a.term()
	b.term()
	if a.wait() != 0 || b.wait() != 0 {
		t.Fatalf("exit codes %d %d", a.code, b.code)
	}
	fires := map[string][]int{}
	for _, p := range []*process{a, b} {
		for _, l := range logLines(p.logs.String(), "recurring job fired") {
			id, _ := l["job_id"].(string)
			fires[id] = append(fires[id], p.pid())
		}
	}
	if len(fires) < 6 {
		t.Fatalf("%d occurrences fired, want at least 6", len(fires))
	}
	for id, pids := range fires {
		if len(pids) != 1 {
			t.Errorf("occurrence %s fired %d times (in %v), want once", id, len(pids), pids)
		}
	}
	for _, id := range occurrences() {
		if n := len(f.runPIDs(id)); n != 1 {
			t.Errorf("occurrence job %s ran %d times, want once", id, n)
		}
		if _, ok := fires[id]; !ok {
			t.Errorf("occurrence job %s ran without a logged fire", id)
		}
	}
}

// TestMixedFleet: a local Functions host and a worker consume the same queues as
// competing consumers: with a budget of one message each, two blocking jobs run one in
// each; every job succeeds and runs once.
func TestMixedFleet(t *testing.T) {
	t.Parallel()
	f := newFleet(t, "", fastHostJSON(1, 0))
	lh := f.startLocalHost()
	w := f.startWorker([]string{"--no-timers"})
	w.waitReady()
	id1, started1, release1 := f.blockJob()
	id2, started2, release2 := f.blockJob()
	testenv.WaitFor(t, 60*time.Second, "both blocking jobs to start", func() bool { return exists(started1) && exists(started2) })
	var ids []string
	for i := range 40 {
		ids = append(ids, f.enqueue("test.noop", fmt.Sprintf(`{"n":%d}`, i), ""))
	}
	must(t, os.WriteFile(release1, nil, 0o644))
	must(t, os.WriteFile(release2, nil, 0o644))
	p1, p2 := f.runPIDs(id1), f.runPIDs(id2)
	if len(p1) != 1 || len(p2) != 1 || p1[0] == p2[0] {
		t.Fatalf("blocking jobs ran in %v and %v, want one run in each consumer", p1, p2)
	}
	if p1[0] != w.pid() && p2[0] != w.pid() {
		t.Errorf("neither blocking job ran in the worker %d: %v %v", w.pid(), p1, p2)
	}
	for _, id := range append(ids, id1, id2) {
		if st := f.wait(id); st.State != record.StateSucceeded {
			t.Fatalf("job %s: %s", id, st.State)
		}
		if n := len(f.runPIDs(id)); n != 1 {
			t.Errorf("job %s ran %d times, want once", id, n)
		}
	}
	w.term()
	if code := w.wait(); code != 0 {
		t.Errorf("worker exit code %d", code)
	}
	lh.stop(t)
}

// TestReadyzWhenStorageIsUnreachable: a worker whose storage does not answer stays alive
// (/healthz 200) but not ready (/readyz 503 naming storage).
func TestReadyzWhenStorageIsUnreachable(t *testing.T) {
	t.Parallel()
	f := newFleet(t, "", fastHostJSON(0, 0))
	closed := freeAddr(t) // nothing listens there
	_, port, _ := strings.Cut(closed, ":")
	var p int
	_, _ = fmt.Sscan(port, &p)
	f.settings["AzureWebJobsStorage"] = testenv.AzuriteConnectionString(p, p)
	w := f.startWorker([]string{"--no-timers"})
	if got := w.get("/healthz"); got != http.StatusOK {
		t.Fatalf("/healthz %d, want 200", got)
	}
	testenv.WaitFor(t, 60*time.Second, "/readyz 503 naming storage", func() bool {
		code, body := w.getBody("/readyz")
		return code == http.StatusServiceUnavailable && strings.Contains(body, "storage unreachable")
	})
	w.term()
	if code := w.wait(); code != 0 {
		t.Errorf("exit code %d", code)
	}
}

// firesIn returns the job ids of the "recurring job fired" lines in a log: the worker's own
// JSON lines, or the handler's lines the local host relays as console messages.
func firesIn(logs string) []string {
	var ids []string
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
			ids = append(ids, id)
		}
	}
	return ids
}

// TestMixedFleetFiresEachOccurrenceOnce: the local Functions host and a worker with the
// same host id share the timers' singleton lease; each occurrence fires once between them.
func TestMixedFleetFiresEachOccurrenceOnce(t *testing.T) {
	t.Parallel()
	f := newFleet(t, "", fastHostJSON(0, 0))
	f.settings["NIGHTSHIFT_SCHEDULE_TICK"] = "*/1 * * * * *"
	lh := f.startLocalHost()
	w := f.startWorker(nil)
	fired := func() map[string]int {
		n := map[string]int{}
		for _, id := range append(firesIn(lh.logs.String()), firesIn(w.logs.String())...) {
			n[id]++
		}
		return n
	}
	testenv.WaitFor(t, 2*time.Minute, "5 occurrences to fire", func() bool { return len(fired()) >= 5 })
	w.term()
	if code := w.wait(); code != 0 {
		t.Errorf("worker exit code %d", code)
	}
	lh.stop(t)
	if err := <-lh.done; err != nil {
		t.Errorf("local host: %v", err)
	}
	for id, n := range fired() {
		if n != 1 {
			t.Errorf("occurrence %s fired %d times, want once", id, n)
		}
	}
}
