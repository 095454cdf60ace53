package schedule_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/internal/funchost"
	"github.com/nightshift-jobs/nightshift/internal/testenv"
	"github.com/nightshift-jobs/nightshift/maintenance"
	"github.com/nightshift-jobs/nightshift/record"
	"github.com/nightshift-jobs/nightshift/schedule"
	"github.com/nightshift-jobs/nightshift/schedule/internal/schedtest"
	"github.com/nightshift-jobs/nightshift/storage"
)

// These tests run the real handler code (schedule/internal/testhandler) under the local
// Functions host (funchost) against Azurite: timer triggers, singleton leases, past-due
// catch-ups and queue triggers as the real host does them.

func handlerBinary(t *testing.T) string {
	return testenv.BuildBinary(t, "./schedule/internal/testhandler")
}

func TestMain(m *testing.M) { testenv.Main(m) }

const testHostJSON = `{
  "version": "2.0",
  "customHandler": {"description": {"defaultExecutablePath": "handler"}},
  "functionTimeout": "00:01:00",
  "extensions": {"queues": {"messageEncoding": "none", "batchSize": 16, "newBatchThreshold": 8,
    "maxPollingInterval": "00:00:00.300", "visibilityTimeout": "00:00:01", "maxDequeueCount": 5}}
}`

// app is an app folder with the test handler, the RunJob/RunDeadLetter queue functions
// on a fresh prefix and the generated timer functions of the chosen declarations.
type app struct {
	t        *testing.T
	dir      string
	prefix   string
	runs     string
	settings map[string]string
	store    *storage.Clients
	client   *nightshift.Client
	logs     *testenv.LogBuffer
}

func newApp(t *testing.T, names []string, sweep string, settings map[string]string) *app {
	t.Helper()
	cs := testenv.ConnectionString(t)
	bin := handlerBinary(t)
	a := &app{t: t, dir: t.TempDir(), prefix: testenv.Prefix(t), runs: t.TempDir(), logs: &testenv.LogBuffer{}}
	a.settings = map[string]string{storage.SettingStorage: cs, storage.SettingNamePrefix: a.prefix, "E2E_DIR": a.runs}
	for k, v := range settings {
		a.settings[k] = v
	}
	write := func(rel, text string) {
		p := filepath.Join(a.dir, rel)
		must(t, os.MkdirAll(filepath.Dir(p), 0o755))
		must(t, os.WriteFile(p, []byte(text), 0o644))
	}
	write("host.json", testHostJSON)
	must(t, os.Symlink(bin, filepath.Join(a.dir, "handler")))
	jobs := a.prefix + "-jobs"
	write("RunJob/function.json", `{"bindings":[{"name":"message","type":"queueTrigger","direction":"in","queueName":"`+jobs+`","connection":"AzureWebJobsStorage"}]}`)
	write("RunDeadLetter/function.json", `{"bindings":[{"name":"message","type":"queueTrigger","direction":"in","queueName":"`+jobs+`-poison","connection":"AzureWebJobsStorage"}]}`)
	var decls []schedule.Recurring
	for _, d := range append(schedtest.Declarations(), schedule.Maintenance()) {
		for _, n := range names {
			if d.Name == n {
				decls = append(decls, d)
			}
		}
	}
	files, err := schedule.Render(decls, schedule.GenerateOptions{SweepSchedule: sweep, NoSweep: sweep == ""})
	must(t, err)
	for rel, b := range files {
		write(rel, string(b))
	}
	a.store, err = storage.FromEnv(func(k string) string { return a.settings[k] }, nil)
	must(t, err)
	must(t, a.store.Ensure(context.Background()))
	a.client = nightshift.NewClient(a.store, nil)
	t.Cleanup(func() {
		if t.Failed() {
			s := a.logs.String()
			if len(s) > 20000 {
				s = s[len(s)-20000:]
			}
			t.Logf("host log (tail):\n%s", s)
		}
	})
	return a
}

// run starts a local host on the app until the test ends; the returned func stops it
// earlier (and waits for it).
func (a *app) run(hostID string) (stop func()) {
	a.t.Helper()
	h, err := funchost.New(a.dir, funchost.Options{
		Settings: a.settings, Getenv: func(string) string { return "" },
		Logger: slog.New(slog.NewTextHandler(a.logs, nil)),
		HostID: hostID, ListenerLockPeriod: 15 * time.Second, ListenerLockRecoveryPollingInterval: time.Second,
		DrainTimeout: 5 * time.Second,
	})
	must(a.t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = h.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				a.t.Error("host did not stop within 30 s")
			}
		})
	}
	a.t.Cleanup(stop)
	return stop
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// runsOf counts the runs of a job.
func (a *app) runsOf(id string) int { return testenv.Runs(a.runs, id) }

// occurrenceJobs returns the statuses of a declaration's occurrence jobs.
func (a *app) occurrenceJobs(name string) []*record.Status {
	a.t.Helper()
	ids, err := a.store.ListStatuses(context.Background())
	must(a.t, err)
	var out []*record.Status
	for _, id := range ids {
		if _, ok := schedule.OccurrenceOf(name, id); !ok {
			continue
		}
		st, _, err := a.store.GetStatus(context.Background(), id)
		if err == nil {
			out = append(out, st)
		}
	}
	return out
}

func succeeded(sts []*record.Status) int {
	n := 0
	for _, st := range sts {
		if st.State == record.StateSucceeded {
			n++
		}
	}
	return n
}

func TestE2E_RecurringJobRunsOnItsSchedule(t *testing.T) {
	t.Parallel()
	// The app settings move Tick from hourly to every 2 seconds, and the built-in
	// maintenance job from nightly to every 5 seconds.
	a := newApp(t, []string{"Tick", "Maintenance"}, "", map[string]string{
		"NIGHTSHIFT_SCHEDULE_TICK": "*/2 * * * * *", schedule.SettingMaintenanceSchedule: "*/5 * * * * *"})
	a.run(a.prefix)
	var jobs []*record.Status
	testenv.WaitFor(t, 40*time.Second, "three Tick occurrences to succeed", func() bool {
		jobs = a.occurrenceJobs("Tick")
		return succeeded(jobs) >= 3
	})
	for _, st := range jobs {
		occ, _ := schedule.OccurrenceOf("Tick", st.JobID)
		if occ.Unix()%2 != 0 {
			t.Errorf("job %s: occurrence %s is not on the */2 schedule", st.JobID, occ)
		}
		if st.State == record.StateSucceeded && a.runsOf(st.JobID) != 1 {
			t.Errorf("job %s ran %d times", st.JobID, a.runsOf(st.JobID))
		}
		if st.Meta[schedule.MetaRecurring] != "Tick" {
			t.Errorf("job %s meta %v", st.JobID, st.Meta)
		}
	}
	// The maintenance job ran as a job and wrote its report.
	testenv.WaitFor(t, 30*time.Second, "a maintenance job to succeed", func() bool { return succeeded(a.occurrenceJobs("Maintenance")) >= 1 })
	dates, err := maintenance.ReportDates(context.Background(), a.store)
	must(t, err)
	yesterday := time.Now().UTC().AddDate(0, 0, -1).Format(maintenance.DateLayout)
	if len(dates) == 0 || dates[len(dates)-1] > yesterday {
		t.Errorf("report dates %v, want yesterday's (%s)", dates, yesterday)
	}
	// `nightshift schedules` sees the setting and the last outcome.
	decls := schedtest.Declarations()[:1]
	infos, err := schedule.Describe(context.Background(), a.store, decls, func(k string) string { return a.settings[k] }, time.UTC, time.Now(), 2)
	must(t, err)
	in := infos[0]
	if in.Source != "setting" || in.Schedule != "*/2 * * * * *" || len(in.Next) != 2 || in.Last == nil || in.Last.JobID == "" {
		t.Errorf("Describe: %+v (last %+v)", in, in.Last)
	}
}

func TestE2E_PastDueAfterDowntime(t *testing.T) {
	t.Parallel()
	a := newApp(t, []string{"Tick", "TickSkip"}, "", nil)
	a.settings["NIGHTSHIFT_SCHEDULE_TICK"] = "0 0 * * * *"
	a.settings["NIGHTSHIFT_SCHEDULE_TICK_SKIP"] = "0 0 * * * *"
	// The host was down across the last two hourly occurrences: its timer status says the
	// last run was three hours ago and the next one was due two hours ago.
	hostID := a.prefix
	h := time.Now().UTC().Truncate(time.Hour)
	last, missed := h.Add(-3*time.Hour), h.Add(-2*time.Hour)
	status := fmt.Sprintf(`{"Last":%q,"Next":%q,"LastUpdated":%q}`, last.Format("2006-01-02T15:04:05+00:00"), missed.Format("2006-01-02T15:04:05+00:00"), last.Format("2006-01-02T15:04:05+00:00"))
	ctx := context.Background()
	if _, err := testenv.BlobService(a.store).CreateContainer(ctx, storage.HostContainer, nil); err != nil && !storage.IsConflict(err) {
		t.Fatal(err)
	}
	for _, fn := range []string{"RecurringTick", "RecurringTickSkip"} {
		_, err := testenv.BlobService(a.store).UploadBuffer(ctx, storage.HostContainer, funchost.TimerStatusBlob(hostID, fn), []byte(status), nil)
		must(t, err)
	}
	a.run(hostID)
	// Run once: exactly one job, for the first missed occurrence.
	testenv.WaitFor(t, 30*time.Second, "the past-due Tick job to succeed", func() bool { return succeeded(a.occurrenceJobs("Tick")) == 1 })
	jobs := a.occurrenceJobs("Tick")
	want := schedtest.Declarations()[0].JobID(missed)
	if len(jobs) != 1 || jobs[0].JobID != want || jobs[0].Meta[schedule.MetaTrigger] != schedule.TriggerPastDue {
		t.Errorf("Tick jobs %+v, want one past-due job %s", jobs, want)
	}
	// Skip: the catch-up fired (the host recorded a new Last) and made no job.
	testenv.WaitFor(t, 30*time.Second, "the TickSkip catch-up to fire", func() bool {
		resp, err := testenv.BlobService(a.store).DownloadStream(ctx, storage.HostContainer, funchost.TimerStatusBlob(hostID, "RecurringTickSkip"), nil)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var st struct{ Last time.Time }
		if json.NewDecoder(resp.Body).Decode(&st) != nil {
			return false
		}
		return st.Last.After(h)
	})
	if jobs := a.occurrenceJobs("TickSkip"); len(jobs) != 0 {
		t.Errorf("TickSkip made %d jobs, want none (past-due policy skip)", len(jobs))
	}
	if !strings.Contains(a.logs.String(), "skipped (past-due policy skip)") {
		t.Error("no skip line in the invocation logs")
	}
}

func TestE2E_TwoHostsOneRunPerOccurrence(t *testing.T) {
	t.Parallel()
	// "0-59" keeps the host's schedule monitor on (§3.3), so fires carry ScheduleStatus.Next.
	a := newApp(t, []string{"Tick"}, "", map[string]string{"NIGHTSHIFT_SCHEDULE_TICK": "*/2 0-59 * * * *"})
	// Two hosts share the storage. With different host ids each holds its own singleton
	// lease, so BOTH fire every occurrence: the occurrence claim must keep it to one job.
	a.run(a.prefix + "a")
	a.run(a.prefix + "b")
	var jobs []*record.Status
	testenv.WaitFor(t, 40*time.Second, "four Tick occurrences to succeed", func() bool {
		jobs = a.occurrenceJobs("Tick")
		return succeeded(jobs) >= 4
	})
	for _, st := range jobs {
		if n := a.runsOf(st.JobID); st.State == record.StateSucceeded && n != 1 {
			t.Errorf("job %s ran %d times", st.JobID, n)
		}
	}
	if n := strings.Count(a.logs.String(), ": duplicate"); n == 0 {
		t.Error("no duplicate fire seen: the two hosts did not both fire")
	} else {
		t.Logf("%d duplicate fires absorbed for %d jobs", n, len(jobs))
	}
}

func TestE2E_FailedScheduledRunIsRetriedWithBackoff(t *testing.T) {
	t.Parallel()
	a := newApp(t, []string{"Flaky"}, "", map[string]string{"NIGHTSHIFT_SCHEDULE_FLAKY": "*/2 * * * * *"})
	a.run(a.prefix)
	var st *record.Status
	testenv.WaitFor(t, 40*time.Second, "a Flaky occurrence to succeed", func() bool {
		for _, j := range a.occurrenceJobs("Flaky") {
			if j.State == record.StateSucceeded {
				st = j
				return true
			}
		}
		return false
	})
	if st.Attempt != 2 || len(st.Errors) != 1 || st.Errors[0].Error != "first attempt fails" {
		t.Fatalf("status %+v, want success at attempt 2 after one recorded failure", st)
	}
	if gap := st.StartedAt.Sub(st.Errors[0].At); gap < time.Second {
		t.Errorf("attempt 2 started %s after attempt 1 failed, before the 1 s backoff", gap)
	}
	if n := a.runsOf(st.JobID); n != 2 {
		t.Errorf("job %s ran %d times, want 2", st.JobID, n)
	}
}

func TestE2E_DelayedJobs(t *testing.T) {
	t.Parallel()
	a := newApp(t, nil, "* * * * * *", map[string]string{"SCHEDTEST_LOOKAHEAD": "200ms"})
	a.run(a.prefix)
	ctx := context.Background()
	// Due in seconds: an invisible queue message.
	soon, err := a.client.EnqueueRaw(ctx, "sched.noop", nil, &nightshift.EnqueueOptions{RunIn: 3 * time.Second})
	must(t, err)
	// Beyond the horizon (lowered from 7 days to 1 s): held in the durable schedule.
	horizon := &schedule.EnqueueOptions{Horizon: time.Second}
	held, err := schedule.Enqueue(ctx, a.client, "sched.noop", nil, &nightshift.EnqueueOptions{RunIn: 5 * time.Second}, horizon)
	must(t, err)
	cancelled, err := schedule.Enqueue(ctx, a.client, "sched.noop", nil, &nightshift.EnqueueOptions{RunIn: 4 * time.Second}, horizon)
	must(t, err)
	if held.MessageID != "" || soon.MessageID == "" {
		t.Errorf("held job has message %q, soon job %q", held.MessageID, soon.MessageID)
	}
	entries, err := schedule.Scheduled(ctx, a.store)
	must(t, err)
	if len(entries) != 2 || entries[0].JobID != cancelled.JobID || entries[1].JobID != held.JobID {
		t.Fatalf("schedule holds %+v, want the cancelled-to-be job then the held one", entries)
	}
	removed, st, err := schedule.Cancel(ctx, a.client, cancelled.JobID)
	if err != nil || !removed || st.State != record.StateCancelled {
		t.Fatalf("Cancel = %v, %+v, %v", removed, st, err)
	}
	for _, j := range []*nightshift.EnqueueResult{soon, held} {
		ctx, cancel := context.WithTimeout(ctx, 40*time.Second)
		st, err := a.client.Wait(ctx, j.JobID, &nightshift.WaitOptions{MaxInterval: 200 * time.Millisecond})
		cancel()
		if err != nil && st == nil {
			t.Fatalf("wait for %s: %v", j.JobID, err)
		}
		if st.State != record.StateSucceeded {
			t.Fatalf("job %s: %+v", j.JobID, st)
		}
		if st.StartedAt.Before(j.RunAt) {
			t.Errorf("job %s started at %s, before it was due (%s)", j.JobID, st.StartedAt, j.RunAt)
		}
		t.Logf("job %s started %s after it was due", j.JobID, st.StartedAt.Sub(j.RunAt).Round(time.Millisecond))
	}
	// The held job was due after the cancelled one, so the sweeper has passed it by now.
	if n := a.runsOf(cancelled.JobID); n != 0 {
		t.Errorf("cancelled job ran %d times", n)
	}
	if st, _ := a.client.Status(ctx, cancelled.JobID); st == nil || st.State != record.StateCancelled {
		t.Errorf("cancelled job status %+v", st)
	}
	if entries, _ := schedule.Scheduled(ctx, a.store); len(entries) != 0 {
		t.Errorf("schedule still holds %+v", entries)
	}
}

func TestE2E_RealDowntimeCatchesUpOnce(t *testing.T) {
	t.Parallel()
	// Every 2 seconds with the schedule monitor on ("0-59" is not "*", §3.3).
	a := newApp(t, []string{"Tick"}, "", map[string]string{"NIGHTSHIFT_SCHEDULE_TICK": "*/2 0-59 * * * *"})
	stop := a.run(a.prefix)
	testenv.WaitFor(t, 30*time.Second, "a first Tick occurrence to succeed", func() bool { return succeeded(a.occurrenceJobs("Tick")) >= 1 })
	stop()
	down := time.Now()
	before := map[string]bool{}
	for _, st := range a.occurrenceJobs("Tick") {
		before[st.JobID] = true
	}
	time.Sleep(5 * time.Second) // the host is down across two or more occurrences
	a.run(a.prefix)
	// The host logs the handler's invocation logs: find the catch-up fire. Its job is new,
	// or (when the host stopped in the middle of a fire, before recording it) the job of
	// that interrupted occurrence, which the claim turns into a duplicate.
	pastDueRE := regexp.MustCompile(`occurrence (\S+) \(past_due\) → job (\S+): (\w+)`)
	var m []string
	testenv.WaitFor(t, 30*time.Second, "the past-due catch-up fire", func() bool {
		m = pastDueRE.FindStringSubmatch(a.logs.String())
		return m != nil
	})
	id := m[2]
	testenv.WaitFor(t, 30*time.Second, "the catch-up occurrence's job to succeed", func() bool {
		st, _, err := a.store.GetStatus(context.Background(), id)
		return err == nil && st.State == record.StateSucceeded
	})
	occ, _ := schedule.OccurrenceOf("Tick", id)
	if occ.Before(down.Add(-3*time.Second)) || occ.After(down.Add(2*time.Second)) {
		t.Errorf("catch-up occurrence %s, want the first one missed after the host stopped at %s", occ, down)
	}
	t.Logf("catch-up fire: occurrence %s, job %s, %s", m[1], id, m[3])
	// One catch-up for the whole downtime: the other missed occurrences have no job.
	for _, st := range a.occurrenceJobs("Tick") {
		o, _ := schedule.OccurrenceOf("Tick", st.JobID)
		if !before[st.JobID] && o.After(occ) && o.Before(down.Add(4*time.Second)) {
			t.Errorf("job %s for an occurrence during the downtime (trigger %s)", st.JobID, st.Meta[schedule.MetaTrigger])
		}
		if n := a.runsOf(st.JobID); st.State == record.StateSucceeded && n != 1 {
			t.Errorf("job %s ran %d times", st.JobID, n)
		}
	}
}
