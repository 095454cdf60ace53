package nightshift_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/internal/testenv"
	"github.com/nightshift-jobs/nightshift/record"
	"github.com/nightshift-jobs/nightshift/storage"
	"github.com/nightshift-jobs/nightshift/worker"
)

type limitedArgs struct {
	N        int    `json:"n"`
	Customer string `json:"customer"`
}

func (limitedArgs) Kind() string { return "test.flow.limited" }

// flowHostJSON is the repository's host.json with test-speed polling.
func flowHostJSON() []byte {
	s := worker.DefaultHostJSON
	s = strings.Replace(s, `"maxPollingInterval": "00:00:10"`, `"maxPollingInterval": "00:00:00.200"`, 1)
	s = strings.Replace(s, `"visibilityTimeout": "00:00:30"`, `"visibilityTimeout": "00:00:00.500"`, 1)
	return []byte(s)
}

// flowConsumer starts a worker (in this process, with its own app, handler and
// limiters, as another process would have) on store, serving reg; it stops at cleanup.
func flowConsumer(t *testing.T, getenv func(string) string, reg *nightshift.Registry) *storage.Clients {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	app, err := nightshift.NewApp(reg, nightshift.Config{Logger: log, Getenv: getenv})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- worker.Run(ctx, app, worker.Options{HealthAddr: "off", NoTimers: true, HostJSON: flowHostJSON(),
			DrainTimeout: 10 * time.Second})
	}()
	select {
	case err := <-done:
		t.Fatalf("worker stopped at once: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("worker: %v", err)
		}
	})
	return app.Store()
}

// succeededStarts waits up to timeout for every job of ids to succeed on attempt 1 and
// returns their start times (from the status records), in order.
func succeededStarts(t *testing.T, client *nightshift.Client, ids []string, timeout time.Duration) []time.Time {
	t.Helper()
	ctx := context.Background()
	var starts []time.Time
	testenv.WaitFor(t, timeout, "every job to succeed", func() bool {
		starts = starts[:0]
		for _, id := range ids {
			st, err := client.Status(ctx, id)
			if err != nil || st.State != record.StateSucceeded {
				return false
			}
			if st.Attempt != 1 {
				t.Fatalf("job %s succeeded on attempt %d, want 1", id, st.Attempt)
			}
			starts = append(starts, st.StartedAt)
		}
		return true
	})
	sort.Slice(starts, func(i, j int) bool { return starts[i].Before(starts[j]) })
	return starts
}

// mostWithin is the most of the ordered starts in any window of length per.
func mostWithin(starts []time.Time, per time.Duration) int {
	most := 0
	for i, s := range starts {
		n := 0
		for _, u := range starts[i:] {
			if u.Sub(s) < per {
				n++
			}
		}
		most = max(most, n)
	}
	return most
}

// maxOverlap is the most intervals [start, end] open at one instant.
func maxOverlap(sts []*record.Status) int {
	type ev struct {
		at    time.Time
		delta int
	}
	var evs []ev
	for _, st := range sts {
		evs = append(evs, ev{st.StartedAt, 1}, ev{st.FinishedAt, -1})
	}
	sort.Slice(evs, func(i, j int) bool {
		if !evs[i].at.Equal(evs[j].at) {
			return evs[i].at.Before(evs[j].at)
		}
		return evs[i].delta < evs[j].delta // an end at the same instant comes first
	})
	cur, best := 0, 0
	for _, e := range evs {
		cur += e.delta
		best = max(best, cur)
	}
	return best
}

// 100 jobs of a kind limited to 3 concurrent, through two consumers on one storage: never
// more than 3 running at once (from the status records' start and end times, and from
// the workers' own count), all succeed on attempt 1.
func TestConcurrencyLimitAcrossTwoConsumers(t *testing.T) {
	t.Parallel()
	{
		{
			getenv := testenv.Env(t)
			const jobs, limit = 100, 3
			var running, peak atomic.Int64
			var mu sync.Mutex
			newReg := func() *nightshift.Registry {
				reg := nightshift.NewRegistry()
				nightshift.AddWorkerFunc(reg, func(ctx context.Context, j *nightshift.Job[limitedArgs]) (any, error) {
					n := running.Add(1)
					mu.Lock()
					peak.Store(max(peak.Load(), n))
					mu.Unlock()
					time.Sleep(100 * time.Millisecond)
					running.Add(-1)
					return j.Args.N, nil
				}, &nightshift.WorkerOptions{Limits: nightshift.Limits{Concurrency: limit, Wait: 500 * time.Millisecond}})
				return reg
			}
			store := flowConsumer(t, getenv, newReg())
			flowConsumer(t, getenv, newReg())
			ctx0, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := store.Ensure(ctx0); err != nil {
				t.Fatal(err)
			}
			client := nightshift.NewClient(store, nil)
			ctx := context.Background()
			var ids []string
			for i := range jobs {
				res, err := client.Enqueue(ctx, limitedArgs{N: i}, nil)
				if err != nil {
					t.Fatal(err)
				}
				ids = append(ids, res.JobID)
			}
			var sts []*record.Status
			testenv.WaitFor(t, 2*time.Minute, "every job to succeed", func() bool {
				sts = sts[:0]
				for _, id := range ids {
					st, err := client.Status(ctx, id)
					if err != nil || st.State != record.StateSucceeded {
						return false
					}
					sts = append(sts, st)
				}
				return true
			})
			for _, st := range sts {
				if st.Attempt != 1 {
					t.Errorf("job %s succeeded on attempt %d, want 1 (waiting for a slot is not an attempt)", st.JobID, st.Attempt)
				}
			}
			if got := maxOverlap(sts); got > limit || got < 1 {
				t.Errorf("status records show %d jobs running at once, limit %d", got, limit)
			}
			if got := peak.Load(); got > limit {
				t.Errorf("the workers saw %d jobs running at once, limit %d", got, limit)
			}
			t.Logf("peak %d running at once (records: %d)", peak.Load(), maxOverlap(sts))
		}
	}
}

type ratedArgs struct {
	N int `json:"n"`
}

func (ratedArgs) Kind() string { return "test.flow.rated" }

// A rate limit of 4 per second through two consumers on one Azurite, counted from the
// status records' start times: the starts keep the rate on average (at most 20 % over),
// and no window of one second holds twice the rate (without the limit all 40 would start
// within a second). The fleet admits at most 4 per second exactly; a run starts when its
// process wakes for it, a little late under load, so a window of run starts can hold one
// or two more (the measured most is logged). Every job succeeds on attempt 1.
func TestRateLimitAcrossTwoConsumers(t *testing.T) {
	t.Parallel()
	getenv := testenv.Env(t)
	const jobs, rate, per = 40, 4, time.Second
	newReg := func() *nightshift.Registry {
		reg := nightshift.NewRegistry()
		nightshift.AddWorkerFunc(reg, func(ctx context.Context, j *nightshift.Job[ratedArgs]) (any, error) {
			return j.Args.N, nil
		}, &nightshift.WorkerOptions{Limits: nightshift.Limits{Rate: rate, Per: per, Wait: 2 * time.Second}})
		return reg
	}
	store := flowConsumer(t, getenv, newReg())
	flowConsumer(t, getenv, newReg())
	ctx := context.Background()
	ctx0, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := store.Ensure(ctx0); err != nil {
		t.Fatal(err)
	}
	client := nightshift.NewClient(store, nil)
	var ids []string
	for i := range jobs {
		res, err := client.Enqueue(ctx, ratedArgs{N: i}, nil)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, res.JobID)
	}
	starts := succeededStarts(t, client, ids, 3*time.Minute)
	most := mostWithin(starts, per)
	if most >= 2*rate {
		t.Errorf("%d starts within one %s, rate %d", most, per, rate)
		for _, s := range starts {
			t.Logf("start %s (+%s)", s.Format("15:04:05.000"), s.Sub(starts[0]).Round(time.Millisecond))
		}
	}
	span := starts[len(starts)-1].Sub(starts[0])
	if least := time.Duration(float64(time.Duration(jobs-1)*per/rate) / 1.2); span < least {
		t.Errorf("%d starts spanned %s: more than 20 %% over the rate (at least %s)", jobs, span, least)
	}
	t.Logf("%d starts over %s (%.2f per second, limit %d); at most %d in any %s window", jobs, span.Round(time.Millisecond),
		float64(jobs-1)/span.Seconds(), rate, most, per)
}

type pausedArgs struct {
	N int `json:"n"`
}

func (pausedArgs) Kind() string { return "test.flow.paused" }

// countingHandler counts log records whose message is msg and whose reason contains sub.
type countingHandler struct {
	slog.Handler
	msg, sub string
	n        *atomic.Int64
}

func (h countingHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h countingHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.msg {
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "reason" && strings.Contains(a.Value.String(), h.sub) {
				h.n.Add(1)
			}
			return true
		})
	}
	return nil
}

func (h countingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h countingHandler) WithGroup(string) slog.Handler      { return h }

// A paused kind's jobs stay queued and do not run, through a worker, while each is held
// (put back on its queue) at least twice; after Resume they all run, on attempt 1.
// envPauseSeconds keeps TestPauseHoldsAKindAndResumeRunsIt's pause at least this long
// (the figure: NIGHTSHIFT_TEST_FLOW_PAUSE_SECONDS=60; CI resumes as soon as every
// job was held twice).
const envPauseSeconds = "NIGHTSHIFT_TEST_FLOW_PAUSE_SECONDS"

// holdPaused waits until the pause began envPauseSeconds ago, failing if a job ran.
func holdPaused(t *testing.T, pausedAt time.Time, ran *atomic.Int64) {
	t.Helper()
	v := os.Getenv(envPauseSeconds)
	if v == "" {
		return
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 3600 {
		t.Fatalf("%s=%q: want whole seconds 1 … 3600", envPauseSeconds, v)
	}
	for time.Since(pausedAt) < time.Duration(n)*time.Second {
		if ran.Load() != 0 {
			t.Fatalf("a job of the paused kind ran %s into the pause", time.Since(pausedAt).Round(time.Second))
		}
		time.Sleep(time.Second)
	}
}

func TestPauseHoldsAKindAndResumeRunsIt(t *testing.T) {
	t.Parallel()
	getenv := testenv.Env(t)
	const jobs = 5
	var ran atomic.Int64
	reg := nightshift.NewRegistry()
	nightshift.AddWorkerFunc(reg, func(ctx context.Context, j *nightshift.Job[pausedArgs]) (any, error) {
		ran.Add(1)
		return j.Args.N, nil
	}, nil)
	store, err := storage.FromEnv(getenv, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := store.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	client := nightshift.NewClient(store, nil)
	target := nightshift.PauseTarget{Kind: pausedArgs{}.Kind()}
	if err := client.Pause(ctx, target); err != nil {
		t.Fatal(err)
	}
	pausedAt := time.Now()
	if p, err := client.Pauses(ctx); err != nil || p.Kinds[target.Kind].IsZero() {
		t.Fatalf("pauses %+v %v", p, err)
	}
	var held atomic.Int64
	log := slog.New(countingHandler{msg: "job waits for a flow-control limit", sub: "is paused", n: &held})
	app, err := nightshift.NewApp(reg, nightshift.Config{Logger: log, Getenv: getenv})
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- worker.Run(wctx, app, worker.Options{HealthAddr: "off", NoTimers: true, HostJSON: flowHostJSON(), DrainTimeout: 10 * time.Second})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("worker: %v", err)
		}
	})
	var ids []string
	for i := range jobs {
		res, err := client.Enqueue(ctx, pausedArgs{N: i}, nil)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, res.JobID)
	}
	testenv.WaitFor(t, time.Minute, "every job to be held twice", func() bool { return held.Load() >= 2*jobs })
	holdPaused(t, pausedAt, &ran)
	if n := ran.Load(); n != 0 {
		t.Fatalf("%d jobs of a paused kind ran", n)
	}
	for _, id := range ids {
		if st, err := client.Status(ctx, id); err != nil || st.State != record.StateQueued || st.Attempt > 1 {
			t.Fatalf("held job %s: %+v %v", id, st, err)
		}
	}
	if err := client.Resume(ctx, target); err != nil {
		t.Fatal(err)
	}
	resumedAt, heldTimes := time.Now(), held.Load()
	defer func() {
		t.Logf("paused %s: %d jobs held %d times, none ran; after resume all succeeded on attempt 1 within %s",
			resumedAt.Sub(pausedAt).Round(time.Second), jobs, heldTimes, time.Since(resumedAt).Round(100*time.Millisecond))
	}()
	testenv.WaitFor(t, time.Minute, "every job to succeed after resume", func() bool {
		for _, id := range ids {
			st, err := client.Status(ctx, id)
			if err != nil || st.State != record.StateSucceeded {
				return false
			}
			if st.Attempt != 1 {
				t.Fatalf("job %s succeeded on attempt %d, want 1", id, st.Attempt)
			}
		}
		return true
	})
	if n := ran.Load(); n != jobs {
		t.Errorf("%d runs, want %d", n, jobs)
	}
}
