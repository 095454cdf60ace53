package schedule

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azqueue/v2"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/envelope"
	"github.com/nightshift-jobs/nightshift/internal/testenv"
	"github.com/nightshift-jobs/nightshift/record"
	"github.com/nightshift-jobs/nightshift/storage"
)

type tickArgs struct {
	N int `json:"n"`
}

func (tickArgs) Kind() string { return "test.tick" }

// fireEnv is a handler with the scheduling functions, served in-process, on fresh storage.
type fireEnv struct {
	t     *testing.T
	store *storage.Clients
	h     *nightshift.Handler
	reg   *nightshift.Registry
	now   time.Time
	mu    sync.Mutex
}

func newFireEnv(t *testing.T, settings map[string]string, decls ...Recurring) *fireEnv {
	t.Helper()
	store := testenv.Clients(t)
	f := &fireEnv{t: t, store: store, reg: nightshift.NewRegistry(), now: time.Now()}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	f.h = nightshift.NewHandler(f.reg, store, &nightshift.HandlerOptions{Logger: log})
	setup := Setup(f.reg, &Options{Recurring: decls, Getenv: func(k string) string { return settings[k] }, Logger: log, Now: f.clock})
	if err := setup(f.h, store); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fireEnv) clock() time.Time { f.mu.Lock(); defer f.mu.Unlock(); return f.now }
func (f *fireEnv) set(t time.Time)  { f.mu.Lock(); f.now = t; f.mu.Unlock() }

// fire sends a host-shaped timer invocation (docs/host-contract.md §1.6). next zero
// means the monitor is off (ScheduleStatus null).
func (f *fireEnv) fire(fn string, next time.Time, pastDue bool) map[string]string {
	f.t.Helper()
	status := "null"
	if !next.IsZero() {
		status = fmt.Sprintf(`{"Last":"0001-01-01T00:00:00+00:00","Next":%q,"LastUpdated":"0001-01-01T00:00:00+00:00"}`, next.UTC().Format("2006-01-02T15:04:05+00:00"))
	}
	body := fmt.Sprintf(`{"Data":{"timer":{"Schedule":{"AdjustForDST":true},"ScheduleStatus":%s,"IsPastDue":%v}},"Metadata":{"sys":{"MethodName":%q,"UtcNow":%q,"RandGuid":"0f8fad5b-d9cb-469f-a165-70867728950e"}}}`,
		status, pastDue, fn, time.Now().UTC().Format(time.RFC3339Nano))
	req := httptest.NewRequest(http.MethodPost, "/"+fn, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Azure-Functions-InvocationId", "inv-1")
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		f.t.Fatalf("POST /%s: %d %s", fn, rec.Code, rec.Body.String())
	}
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		f.t.Errorf("Content-Type %q", ct)
	}
	var resp struct {
		Logs        []string
		ReturnValue map[string]any
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
		f.t.Fatal(err)
	}
	out := map[string]string{}
	for k, v := range resp.ReturnValue {
		out[k] = fmt.Sprint(v)
	}
	if len(resp.Logs) > 0 {
		out["log"] = resp.Logs[0]
	}
	return out
}

// messages returns the envelopes on the jobs queue (dequeued).
func (f *fireEnv) messages() []*envelope.Envelope {
	f.t.Helper()
	var out []*envelope.Envelope
	q := testenv.QueueService(f.store).NewQueueClient(f.store.Layout.JobsQueue())
	for {
		resp, err := q.DequeueMessages(context.Background(), &azqueue.DequeueMessagesOptions{NumberOfMessages: to.Ptr(int32(32))})
		if err != nil {
			f.t.Fatal(err)
		}
		if len(resp.Messages) == 0 {
			return out
		}
		for _, m := range resp.Messages {
			env, err := envelope.Decode([]byte(*m.MessageText))
			if err != nil {
				f.t.Fatal(err)
			}
			out = append(out, env)
		}
	}
}

var tick = Recurring{Name: "Tick", Schedule: "0 0 * * * *", Args: tickArgs{N: 1}}

func TestFireEnqueuesOneJobPerOccurrence(t *testing.T) {
	t.Parallel()
	f := newFireEnv(t, nil, tick)
	occ := time.Now().UTC().Truncate(time.Hour)
	f.set(occ.Add(20 * time.Millisecond))
	// Eight fires for the same occurrence at once (two hosts, retried invocations), then
	// two late ones.
	var wg sync.WaitGroup
	outcomes := make(chan string, 10)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); outcomes <- f.fire("RecurringTick", occ, false)["outcome"] }()
	}
	wg.Wait()
	outcomes <- f.fire("RecurringTick", occ, false)["outcome"]
	outcomes <- f.fire("RecurringTick", occ, true)["outcome"] // a past-due catch-up of the same occurrence
	close(outcomes)
	count := map[string]int{}
	for o := range outcomes {
		count[o]++
	}
	if count["enqueued"] != 1 || count["duplicate"] != 9 {
		t.Errorf("outcomes %v, want 1 enqueued and 9 duplicate", count)
	}
	msgs := f.messages()
	if len(msgs) != 1 {
		t.Fatalf("%d messages on the queue, want 1", len(msgs))
	}
	m := msgs[0]
	if m.JobID != tick.JobID(occ) || m.Kind != "test.tick" || string(m.Args) != `{"n":1}` {
		t.Errorf("envelope %+v", m)
	}
	if m.Meta[MetaOccurrence] != occ.Format(time.RFC3339) || m.Meta[MetaTrigger] != TriggerSchedule || m.Meta[MetaRecurring] != "Tick" {
		t.Errorf("meta %v", m.Meta)
	}
	st, _, err := f.store.GetStatus(context.Background(), m.JobID)
	if err != nil || st.State != record.StateQueued {
		t.Errorf("status %+v, %v", st, err)
	}
	// The next occurrence is a new job.
	f.set(occ.Add(time.Hour + 5*time.Millisecond))
	if o := f.fire("RecurringTick", occ.Add(time.Hour), false); o["outcome"] != "enqueued" || o["job_id"] != tick.JobID(occ.Add(time.Hour)) {
		t.Errorf("next occurrence: %v", o)
	}
}

func TestFirePastDuePolicies(t *testing.T) {
	t.Parallel()
	skip := Recurring{Name: "Skipper", Schedule: "0 0 * * * *", Kind: "test.tick", PastDue: PastDueSkip}
	f := newFireEnv(t, nil, tick, skip)
	missed := time.Now().UTC().Truncate(time.Hour).Add(-3 * time.Hour)
	f.set(time.Now())
	if o := f.fire("RecurringSkipper", missed, true); o["outcome"] != "" || !strings.Contains(o["log"], "skipped") {
		t.Errorf("skip policy: %v", o)
	}
	o := f.fire("RecurringTick", missed, true)
	if o["outcome"] != "enqueued" || o["job_id"] != tick.JobID(missed) {
		t.Errorf("run-once policy: %v", o)
	}
	msgs := f.messages()
	if len(msgs) != 1 || msgs[0].Meta[MetaTrigger] != TriggerPastDue || msgs[0].JobID != tick.JobID(missed) {
		t.Errorf("messages %+v, want the one past-due Tick job", msgs)
	}
}

func TestFireStartupAndMonitorOff(t *testing.T) {
	t.Parallel()
	startup := Recurring{Name: "Boot", Schedule: "0 0 3 * * *", Kind: "test.tick", RunOnStartup: true}
	// The setting moves Tick to every 2 seconds: sub-minute, so the host sends no status.
	f := newFireEnv(t, map[string]string{"NIGHTSHIFT_SCHEDULE_TICK": "*/2 * * * * *"}, tick, startup)
	base := time.Now().UTC().Truncate(time.Minute)
	// runOnStartup fire: the recorded next occurrence is hours away.
	f.set(base.Add(1500 * time.Millisecond))
	o := f.fire("RecurringBoot", base.Add(3*time.Hour), false)
	if o["job_id"] != startup.JobID(base.Add(time.Second)) || o["outcome"] != "enqueued" {
		t.Errorf("startup fire: %v", o)
	}
	// Monitor off: the occurrence is the nearest one on the clock, also when the timer
	// fires a few milliseconds early.
	f.set(base.Add(10*time.Second + 40*time.Millisecond))
	if o := f.fire("RecurringTick", time.Time{}, false); o["job_id"] != tick.JobID(base.Add(10*time.Second)) {
		t.Errorf("monitor-off fire: %v", o)
	}
	f.set(base.Add(12*time.Second - 8*time.Millisecond))
	if o := f.fire("RecurringTick", time.Time{}, false); o["job_id"] != tick.JobID(base.Add(12*time.Second)) {
		t.Errorf("early monitor-off fire: %v", o)
	}
	msgs := f.messages()
	if len(msgs) != 3 {
		t.Errorf("%d messages, want 3", len(msgs))
	}
	for _, m := range msgs {
		if m.Kind == "test.tick" && strings.HasPrefix(m.JobID, "cron-boot-") && m.Meta[MetaTrigger] != TriggerStartup {
			t.Errorf("boot job trigger %q", m.Meta[MetaTrigger])
		}
	}
}

func TestStaleClaimIsTakenOver(t *testing.T) {
	t.Parallel()
	f := newFireEnv(t, nil, tick)
	occ := time.Now().UTC().Truncate(time.Hour)
	// A fire claimed the occurrence two minutes ago and crashed before enqueueing.
	f.set(occ.Add(-2 * time.Minute))
	r, err := newRunner(f.store, Options{Recurring: []Recurring{tick}, NoBuiltins: true, Now: f.clock})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.store.PutJSON(context.Background(), f.store.Layout.ScheduleContainer(), ClaimBlob("Tick", occ),
		claim{JobID: tick.JobID(occ), Occurrence: occ, State: "claimed", At: f.clock()}, ""); err != nil {
		t.Fatal(err)
	}
	f.set(occ.Add(10 * time.Millisecond))
	if o := f.fire("RecurringTick", occ, true); o["outcome"] != "enqueued" {
		t.Errorf("fire after a stale claim: %v", o)
	}
	if n := len(f.messages()); n != 1 {
		t.Errorf("%d messages, want 1", n)
	}
}

func TestSetupRegistersMaintenanceAndSweep(t *testing.T) {
	t.Parallel()
	f := newFireEnv(t, nil)
	if kinds := f.reg.Kinds(); len(kinds) != 1 || kinds[0] != "nightshift.maintenance" {
		t.Errorf("kinds %v", kinds)
	}
	if o := f.fire("ScheduleSweep", time.Time{}, false); o["log"] == "" || !strings.Contains(o["log"], "moved 0") {
		t.Errorf("sweep: %v", o)
	}
	// A malformed retention setting stops the handler with the setting's name.
	reg := nightshift.NewRegistry()
	h := nightshift.NewHandler(reg, f.store, &nightshift.HandlerOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	err := Setup(reg, &Options{Getenv: func(k string) string {
		if k == "NIGHTSHIFT_RETENTION_DAYS" {
			return "two weeks"
		}
		return ""
	}})(h, f.store)
	if err == nil || !strings.Contains(err.Error(), "NIGHTSHIFT_RETENTION_DAYS") {
		t.Errorf("Setup with a bad retention setting = %v", err)
	}
}

func TestSetupWarnsAboutMissingTimerFunctions(t *testing.T) {
	t.Parallel()
	store := testenv.Clients(t)
	root := t.TempDir()
	if _, err := WriteFunctions(root, []Recurring{tick}, GenerateOptions{}); err != nil {
		t.Fatal(err)
	}
	var logs strings.Builder
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return logs.Write(p) }), nil))
	reg := nightshift.NewRegistry()
	h := nightshift.NewHandler(reg, store, &nightshift.HandlerOptions{Logger: log})
	other := Recurring{Name: "Other", Schedule: "0 0 * * * *", Kind: "test.tick"}
	err := Setup(reg, &Options{Recurring: []Recurring{tick, other}, Logger: log, Getenv: func(k string) string {
		if k == envAppRoot {
			return root
		}
		return ""
	}})(h, store)
	if err != nil {
		t.Fatal(err)
	}
	out := logs.String()
	for _, fn := range []string{"RecurringMaintenance", "RecurringOther"} {
		if !strings.Contains(out, "function="+fn) {
			t.Errorf("no warning for %s:\n%s", fn, out)
		}
	}
	for _, fn := range []string{"RecurringTick", "ScheduleSweep"} {
		if strings.Contains(out, "function="+fn+" ") {
			t.Errorf("unexpected warning for %s:\n%s", fn, out)
		}
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
