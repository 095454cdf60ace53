package nightshift

import (
	"context"
	"encoding/json"
	"errors"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nightshift-jobs/nightshift/envelope"
	"github.com/nightshift-jobs/nightshift/internal/store"
	"github.com/nightshift-jobs/nightshift/internal/testenv"
	"github.com/nightshift-jobs/nightshift/record"
	"github.com/nightshift-jobs/nightshift/storage"
)

// stormArgs is a healthy job caught in a crash storm: the host's deliveries listed in
// Reach reach the handler (the others are lost with a handler process that is down), and
// in its first life the process dies under it on the deliveries in KillAt (a neighbour's
// crash). Any other run, and every run of a replay, succeeds.
type stormArgs struct {
	Reach  []int `json:"reach,omitempty"`
	KillAt []int `json:"kill_at,omitempty"`
}

func (stormArgs) Kind() string { return "storm.victim" }

// pillArgs is a poison pill: every run kills the handler process.
type pillArgs struct {
	Reach []int `json:"reach,omitempty"`
}

func (pillArgs) Kind() string { return "storm.pill" }

type stormFailArgs struct {
	Permanent bool `json:"permanent,omitempty"`
	Reach     []int
}

func (stormFailArgs) Kind() string { return "storm.fail" }

// everyDelivery reaches the handler on every delivery of a 5-delivery host.
var everyDelivery = []int{1, 2, 3, 4, 5}

// stormEnv is a handler, its client and storage for crash-storm tests.
type stormEnv struct {
	t      *testing.T
	store  *storage.Clients
	h      *Handler
	client *Client
}

func newStormEnv(t *testing.T, store *storage.Clients) *stormEnv {
	reg := NewRegistry()
	AddWorkerFunc(reg, func(ctx context.Context, j *Job[stormArgs]) (any, error) {
		if j.Replay == 0 && slices.Contains(j.Args.KillAt, j.DequeueCount) {
			runtime.Goexit() // the process dies mid-run
		}
		return map[string]int{"life": j.Replay}, nil
	}, nil)
	AddWorkerFunc(reg, func(ctx context.Context, j *Job[pillArgs]) (any, error) {
		runtime.Goexit()
		return nil, nil
	}, nil)
	AddWorkerFunc(reg, func(ctx context.Context, j *Job[stormFailArgs]) (any, error) {
		if j.Args.Permanent {
			return nil, Permanentf("bad input")
		}
		return nil, errors.New("still failing")
	}, &WorkerOptions{MaxAttempts: 1})
	// RunningAfter is long: a worker that dies leaves its watch behind, which must not
	// write meanwhile.
	h := NewHandler(reg, store, &HandlerOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), RunningAfter: time.Hour})
	return &stormEnv{t: t, store: store, h: h, client: NewClient(store, nil)}
}

// reaches says whether a host delivery of m reaches the handler: its args' "reach" list
// names the delivery (messages without one always reach it).
func reaches(m store.Message) bool {
	env, err := envelope.Decode([]byte(m.Text))
	if err != nil {
		return true
	}
	var a struct {
		Reach []int `json:"reach"`
	}
	_ = json.Unmarshal(env.Args, &a)
	return slices.Contains(a.Reach, int(m.DequeueCount))
}

// storm enqueues the jobs and plays the host through a crash storm, then the dead-letter
// function over the poison queue.
func (e *stormEnv) storm(jobs map[string]JobArgs) {
	e.t.Helper()
	ctx := context.Background()
	for id, args := range jobs {
		if _, err := e.client.Enqueue(ctx, args, &EnqueueOptions{JobID: id}); err != nil {
			e.t.Fatal(err)
		}
	}
	q := e.store.Layout.JobsQueue()
	testenv.CrashStorm(e.t, e.store, e.h, FunctionRunJob, q, DefaultMaxDequeueCount, reaches)
	testenv.Drain(e.t, e.store, e.h, q, FunctionRunJob, FunctionRunDeadLetter)
}

// stormJobs are the dead letters of a crash storm and of jobs that failed on their own.
func stormJobs(prefix string) map[string]JobArgs {
	return map[string]JobArgs{
		prefix + "never":   stormArgs{},                                        // no delivery reached a handler
		prefix + "partial": stormArgs{Reach: []int{2, 4}, KillAt: []int{2, 4}}, // two runs killed by neighbours
		prefix + "pill":    pillArgs{Reach: everyDelivery},                     // kills its handler on every delivery
		prefix + "perm":    stormFailArgs{Permanent: true, Reach: everyDelivery},
		prefix + "spent":   stormFailArgs{Reach: everyDelivery},
	}
}

// wantCauses are the reasons and causes of stormJobs' dead letters.
var wantCauses = map[string][2]string{
	"never":   {string(record.ReasonHostRetriesExhausted), string(record.CauseCrash)},
	"partial": {string(record.ReasonHostRetriesExhausted), string(record.CauseCrash)},
	"pill":    {string(record.ReasonHostRetriesExhausted), string(record.CauseJob)},
	"perm":    {string(record.ReasonPermanentError), string(record.CauseJob)},
	"spent":   {string(record.ReasonAttemptsExhausted), string(record.CauseJob)},
}

// TestCrashStormCauses: a crash storm's dead letters say what caused them. Jobs whose
// deliveries never ran, or whose redeliveries did not all run, are crash-caused; a job
// that killed its handler on every delivery, and jobs that failed on their own, are
// job-caused. The status counts the redeliveries that ran.
func TestCrashStormCauses(t *testing.T) {
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			e := newStormEnv(t, b.Clients(t))
			e.storm(stormJobs("c-"))
			ctx := context.Background()
			for name, want := range wantCauses {
				d, err := e.client.DeadLetter(ctx, "c-"+name)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				if string(d.Reason) != want[0] || string(d.Cause) != want[1] {
					t.Errorf("%s: reason %s, cause %s; want %s, %s (%s)", name, d.Reason, d.Cause, want[0], want[1], d.Detail)
				}
			}
			for name, runs := range map[string]int{"never": 0, "partial": 2, "pill": 4} {
				st, err := e.client.Status(ctx, "c-"+name)
				if err != nil || st.State != record.StateDead || st.Runs != runs {
					t.Errorf("%s: status %+v (%v); want dead with %d runs", name, st, err, runs)
				}
			}
			if d, _ := e.client.DeadLetter(ctx, "c-pill"); !strings.Contains(d.Detail, "cause job: 4 of the host's 4 redeliveries of attempt 1 ran the job") {
				t.Errorf("pill detail: %s", d.Detail)
			}
			if d, _ := e.client.DeadLetter(ctx, "c-never"); !strings.Contains(d.Detail, "cause crash: the status never saw attempt 1 start") {
				t.Errorf("never detail: %s", d.Detail)
			}
		})
	}
}

// failPuts fails every PUT with 403 while on (storage refusing writes; not retried by the SDK).
type failPuts struct {
	next policy.Transporter
	on   atomic.Bool
}

func (f *failPuts) Do(req *http.Request) (*http.Response, error) {
	if f.on.Load() && req.Method == http.MethodPut {
		return &http.Response{StatusCode: http.StatusForbidden, Status: "403 Forbidden", Header: http.Header{},
			Body: io.NopCloser(strings.NewReader("")), Request: req}, nil
	}
	return f.next.Do(req)
}

// TestRedeliveryRecordsItsStart: a redelivery writes its start (counted in runs) before
// the worker runs, and does not run when that write fails (the invocation fails, so the
// host delivers it again); a first delivery of a quick job writes no start.
func TestRedeliveryRecordsItsStart(t *testing.T) {
	ft := &failPuts{next: http.DefaultClient}
	store, err := storage.FromEnv(testenv.Env(t), &storage.Options{Transport: ft})
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Ensure(context.Background()); err != nil {
		t.Fatal(err)
	}
	var runs atomic.Int64
	reg := NewRegistry()
	AddWorkerFunc(reg, func(ctx context.Context, j *Job[countArgs]) (any, error) {
		runs.Add(1)
		return nil, nil
	}, nil)
	h := NewHandler(reg, store, &HandlerOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	deliver := func(id string, dq int) int {
		body := hostRequest(t, FunctionRunJob, []byte(`{"job_id":"`+id+`","kind":"test.count"}`), hostMeta{DequeueCount: dq})
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/"+FunctionRunJob, strings.NewReader(string(body))))
		return rec.Code
	}
	ft.on.Store(true)
	if code := deliver("redelivered", 3); code != http.StatusInternalServerError || runs.Load() != 0 {
		t.Fatalf("redelivery with failing writes: %d, %d runs; want 500 and no run", code, runs.Load())
	}
	ft.on.Store(false)
	if code := deliver("redelivered", 4); code != http.StatusOK || runs.Load() != 1 {
		t.Fatalf("redelivery: %d, %d runs", code, runs.Load())
	}
	c := NewClient(store, nil)
	st, err := c.Status(context.Background(), "redelivered")
	if err != nil || st.State != record.StateSucceeded || st.Runs != 1 || st.RunDequeueCount != 4 {
		t.Fatalf("status after the redelivery: %+v, %v", st, err)
	}
	if code := deliver("first", 1); code != http.StatusOK {
		t.Fatalf("first delivery: %d", code)
	}
	if st, err := c.Status(context.Background(), "first"); err != nil || st.Runs != 0 || st.RunDequeueCount != 0 {
		t.Fatalf("status after a first delivery: %+v, %v", st, err)
	}
}
