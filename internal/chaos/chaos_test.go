//go:build linux

package chaos

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/internal/testenv"
	"github.com/nightshift-jobs/nightshift/record"
	"github.com/nightshift-jobs/nightshift/storage"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// The storm's size. The defaults fit CI (each storm under a minute on 2 cores); a soak raises them:
//
//	go test ./internal/chaos/ -run 'TestCrashStorm$' -v -timeout 2h -chaos.jobs=10000 -chaos.duration=5m
//	go test ./internal/chaos/ -run TestCrashStormFleet -v -timeout 2h -chaos.jobs=10000 -chaos.duration=5m
var (
	flagJobs      = flag.Int("chaos.jobs", 300, "jobs the crash storm enqueues")
	flagDuration  = flag.Duration("chaos.duration", 30*time.Second, "how long the storm (kills, the host crash, the Azurite restart) lasts")
	flagKillEvery = flag.Duration("chaos.kill-every", 3*time.Second, "mean time between handler (fleet: worker) SIGKILLs (±1/3, random)")
	flagSeed      = flag.Uint64("chaos.seed", 0, "random seed of the kill times (0: from the clock; the summary prints it)")
	flagWorkers   = flag.Int("chaos.workers", 4, "worker processes of TestCrashStormFleet")
)

// job is one job of the storm: its id, its args, and the statuses observed.
type job struct {
	id   string
	args Args
	prio nightshift.Priority

	mu       sync.Mutex
	enqueued bool
	seen     []record.Status // the distinct (replay, attempt, state) observed, in order
	back     []string        // observed steps backwards
}

// jobArgs is job n's args: a run of 0.2–1.5 s, a few of 2.5 s (their status goes through
// running); the first ones (1 %, at least 3) are marathons of 6 s, longer than the gap
// between two kills, so they are likely to be killed at every delivery until the host
// poisons them (host_retries_exhausted) and the test replays them.
func jobArgs(n, jobs int) Args {
	a := Args{N: n, Salt: fmt.Sprintf("s%d", n*7919%1000), MS: 200 + n*37%1300}
	switch {
	case n < max(3, jobs/100):
		a.MS = marathonMS
	case n%20 == 7:
		a.MS = 2500
	}
	return a
}

// marathonMS is how long a marathon job runs.
const marathonMS = 6000

// stormStats are the storm's counts, for the summary.
type stormStats struct {
	kills, killMisses atomic.Int64
	hostCrashes       atomic.Int64
	azuriteRestarts   atomic.Int64
	enqueueRetries    atomic.Int64
	reads, readErrors atomic.Int64
}

// TestCrashStorm runs jobs through the local host while the handler is SIGKILLed every few
// seconds, the host is SIGKILLed once and Azurite is stopped and restarted once, then
// checks: no job lost (every job succeeds; host_retries_exhausted dead letters are counted
// and replayed, and must then succeed), none corrupt (each result is Expected(args), every
// record decodes), no status observed going backwards. It logs a summary line with the
// duplicate runs. Durations only drive the storm; nothing is asserted about time.
func TestCrashStorm(t *testing.T) {
	crashStorm(t, func(settings map[string]string) consumer { return newHostConsumer(t, settings) })
}

// TestCrashStormFleet is the crash storm with worker mode: a fleet of -chaos.workers
// `chaoshandler worker` processes and the local host consume the same queues while one
// worker is SIGKILLed (round robin) every few seconds and replaced, the whole fleet and
// the host are SIGKILLed once and Azurite is stopped and restarted once; the checks are
// TestCrashStorm's. It does not run in parallel with TestCrashStorm: each is a storm that
// fills the machine (2 cores in CI) on its own.
func TestCrashStormFleet(t *testing.T) {
	var fleet *fleetConsumer
	crashStorm(t, func(settings map[string]string) consumer {
		fleet = newFleetConsumer(t, settings, *flagWorkers, true)
		return fleet
	})
	// The storm means something only if the workers did take part.
	if all, byWorkers := fleet.finishedRuns(); byWorkers == 0 {
		t.Errorf("the workers finished none of the %d runs: the host ran every job", all)
	}
}

// newStormStorage is the storage of one chaos test on the account conn, under the test's
// name prefix: the consumers' settings (with the runs directory the chaos handler records
// its runs in), the clients (queues and containers made) and a quiet client.
func newStormStorage(t *testing.T, conn string) (runs string, settings map[string]string, clients *storage.Clients, client *nightshift.Client) {
	t.Helper()
	runs = t.TempDir()
	settings = map[string]string{
		storage.SettingStorage:    conn,
		storage.SettingNamePrefix: testenv.Prefix(t),
		testenv.EnvRunsDir:        runs,
	}
	clients, err := storage.FromEnv(func(k string) string { return settings[k] }, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := clients.Ensure(context.Background()); err != nil {
		t.Fatal(err)
	}
	client = nightshift.NewClient(clients, &nightshift.ClientOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	return runs, settings, clients, client
}

// crashStorm runs the storm on the consumer newConsumer makes from the app settings and
// checks its outcome (see TestCrashStorm).
func crashStorm(t *testing.T, newConsumer func(settings map[string]string) consumer) {
	t.Helper()
	began := time.Now()
	az := newAzurite(t)
	runs, settings, _, client := newStormStorage(t, az.connectionString())
	ctx := context.Background()
	cons := newConsumer(settings)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("consumer log (tail):\n%s", cons.logTail())
		}
	})

	jobs := make([]*job, *flagJobs)
	prios := []nightshift.Priority{nightshift.PriorityNormal, nightshift.PriorityHigh, nightshift.PriorityLow}
	for n := range jobs {
		jobs[n] = &job{id: fmt.Sprintf("chaos-%05d", n), args: jobArgs(n, len(jobs)), prio: prios[n%3]}
	}
	seed := *flagSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	st := &stormStats{}

	if err := cons.start(); err != nil {
		t.Fatal(err)
	}
	stormCtx, endStorm := context.WithCancel(ctx)
	stormErr := make(chan error, 1)
	var wg sync.WaitGroup
	wg.Add(3)
	runCtx, abort := context.WithCancel(ctx) // ends the producer when the test fails
	t.Cleanup(abort)
	go func() { defer wg.Done(); produce(runCtx, client, jobs, 6**flagDuration/10, st) }()
	observeCtx, endObserve := context.WithCancel(ctx)
	t.Cleanup(endObserve)
	go func() { defer wg.Done(); observe(observeCtx, client, jobs, st) }()
	go func() {
		defer wg.Done()
		defer endStorm()
		stormErr <- storm(stormCtx, cons, az, seed, st)
	}()
	// Wait for the storm to end, then for every job to end (a bound against hangs only).
	<-stormCtx.Done()
	if err := <-stormErr; err != nil {
		t.Fatalf("the storm could not go on: %v", err)
	}
	settleBound := 5*time.Minute + *flagDuration
	dead := waitTerminal(t, client, jobs, settleBound)
	replayed := replayDead(t, client, dead)
	if len(replayed) > 0 {
		waitTerminal(t, client, replayed, settleBound)
	}
	endObserve()
	wg.Wait()
	if err := cons.stop(); err != nil {
		t.Error(err)
	}

	r := check(t, client, runs, jobs)
	marathons := 0
	for _, j := range dead {
		if j.args.MS == marathonMS {
			marathons++
		}
	}
	observed, sawRunning := 0, 0
	for _, j := range jobs {
		observed += len(j.seen)
		if slices.ContainsFunc(j.seen, func(s record.Status) bool { return s.State == record.StateRunning }) {
			sawRunning++
		}
	}
	t.Logf("chaos summary: %d jobs via %s in %s (storm %s, seed %d): %s SIGKILLs %d (%d found no %s), %s SIGKILLs %d, "+
		"Azurite restarts %d, %s; runs %d = %d duplicate runs (%d jobs ran more than once, max %d runs, %d duplicate finished runs, %d overlapping); "+
		"dead host_retries_exhausted %d (%d marathons), replayed %d; lost %d, corrupt %d, backwards %d (%d distinct statuses observed, %d jobs seen running); status reads %d (%d failed), enqueue retries %d",
		len(jobs), cons.name(), time.Since(began).Round(time.Second), *flagDuration, seed, cons.runner(), st.kills.Load(), st.killMisses.Load(), cons.runner(), cons.whole(), st.hostCrashes.Load(),
		st.azuriteRestarts.Load(), cons.stats(), r.runs, r.runs-len(jobs), r.multi, r.maxRuns, r.dupFinished, r.overlaps,
		len(dead), marathons, len(replayed), r.lost, r.corrupt, r.backwards, observed, sawRunning, st.reads.Load(), st.readErrors.Load(), st.enqueueRetries.Load())
}

// produce enqueues the jobs with the Go client, evenly over spread, retrying each until
// it is on its queue (storage may be down) or ctx ends; a retry that finds the id taken
// means an earlier try got through.
func produce(ctx context.Context, client *nightshift.Client, jobs []*job, spread time.Duration, st *stormStats) {
	gap := spread / time.Duration(len(jobs))
	next := time.Now()
	for _, j := range jobs {
		if d := time.Until(next); d > 0 {
			time.Sleep(d)
		}
		next = next.Add(gap)
		for {
			_, err := client.Enqueue(ctx, j.args, &nightshift.EnqueueOptions{JobID: j.id, Priority: j.prio})
			if err == nil || errors.Is(err, nightshift.ErrJobExists) {
				break
			}
			if ctx.Err() != nil {
				return
			}
			st.enqueueRetries.Add(1)
			time.Sleep(200 * time.Millisecond)
		}
		j.mu.Lock()
		j.enqueued = true
		j.mu.Unlock()
	}
}

// storm runs the chaos until the storm's duration has passed: a handler SIGKILL every
// flagKillEvery (±1/3), one SIGKILL of the whole consumer at 35 % (restarted a second
// later) and one graceful stop of Azurite at 65 % (restarted 2 s later, same ports and
// disk location).
func storm(ctx context.Context, cons consumer, az *azurite, seed uint64, st *stormStats) error {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	start := time.Now()
	end := start.Add(*flagDuration)
	crashAt := start.Add(*flagDuration * 35 / 100)
	azuriteAt := start.Add(*flagDuration * 65 / 100)
	every := *flagKillEvery
	nextKill := start.Add(every)
	for {
		now := time.Now()
		if now.After(end) {
			return nil
		}
		switch {
		case !crashAt.IsZero() && now.After(crashAt):
			crashAt = time.Time{}
			if err := cons.crash(); err != nil {
				return err
			}
			st.hostCrashes.Add(1)
			time.Sleep(time.Second)
			if err := cons.start(); err != nil {
				return err
			}
		case !azuriteAt.IsZero() && now.After(azuriteAt):
			azuriteAt = time.Time{}
			if err := az.stop(); err != nil {
				return err
			}
			time.Sleep(2 * time.Second)
			if err := az.start(); err != nil {
				return err
			}
			st.azuriteRestarts.Add(1)
		case now.After(nextKill):
			if cons.killRunner() != 0 {
				st.kills.Add(1)
			} else {
				st.killMisses.Add(1)
			}
			nextKill = now.Add(every*2/3 + time.Duration(rng.Int64N(int64(every*2/3)+1)))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// observe reads the enqueued jobs' statuses round-robin (at most ~100 reads a second)
// until ctx ends, recording each job's distinct statuses and any step backwards. Reads
// fail while Azurite is down; those are counted and skipped.
func observe(ctx context.Context, client *nightshift.Client, jobs []*job, st *stormStats) {
	for ctx.Err() == nil {
		for _, j := range jobs {
			if ctx.Err() != nil {
				return
			}
			j.mu.Lock()
			skip := !j.enqueued || (len(j.seen) > 0 && j.seen[len(j.seen)-1].State == record.StateSucceeded)
			j.mu.Unlock()
			if skip {
				continue
			}
			rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			s, err := client.Status(rctx, j.id)
			cancel()
			st.reads.Add(1)
			if err != nil {
				if !errors.Is(err, nightshift.ErrNotFound) {
					st.readErrors.Add(1)
				}
				continue
			}
			j.observe(s)
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// observe appends s to the job's sequence when it differs from the last status seen,
// noting a step backwards: (replay, attempt, state order) must not decrease (docs/
// semantics.md "Status records never go backwards"), and a terminal state is final for
// its life.
func (j *job) observe(s *record.Status) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if n := len(j.seen); n > 0 {
		prev := &j.seen[n-1]
		if prev.Replay == s.Replay && prev.Attempt == s.Attempt && prev.State == s.State {
			return
		}
		if !s.Supersedes(prev) {
			j.back = append(j.back, fmt.Sprintf("%s → %s", describe(prev), describe(s)))
		}
	}
	j.seen = append(j.seen, record.Status{JobID: s.JobID, State: s.State, Replay: s.Replay, Attempt: s.Attempt})
}

func describe(s *record.Status) string {
	return fmt.Sprintf("%s(replay %d, attempt %d)", s.State, s.Replay, s.Attempt)
}

// waitTerminal polls the jobs' statuses until each is terminal, failing the test when
// bound passes first (a guard against hangs, not a performance assertion). It returns the
// jobs that are dead.
func waitTerminal(t *testing.T, client *nightshift.Client, jobs []*job, bound time.Duration) []*job {
	t.Helper()
	pending := append([]*job(nil), jobs...)
	var dead []*job
	deadline := time.Now().Add(bound)
	for len(pending) > 0 {
		var still []*job
		sts, errs := make([]*record.Status, len(pending)), make([]error, len(pending))
		each(len(pending), func(i int) { sts[i], errs[i] = client.Status(context.Background(), pending[i].id) })
		for i, j := range pending {
			s, err := sts[i], errs[i]
			switch {
			case err != nil:
				still = append(still, j)
			case s.State.Terminal():
				j.observe(s)
				if s.State == record.StateDead {
					dead = append(dead, j)
				}
			default:
				still = append(still, j)
			}
		}
		pending = still
		if len(pending) == 0 {
			break
		}
		if time.Now().After(deadline) {
			ids := make([]string, 0, 10)
			for _, j := range pending[:min(10, len(pending))] {
				ids = append(ids, j.id)
			}
			t.Fatalf("lost: %d jobs did not end within %s after the storm (first: %s)", len(pending), bound, strings.Join(ids, ", "))
		}
		time.Sleep(time.Second)
	}
	return dead
}

// replayDead checks that each dead job died because the host gave up on its message
// (host_retries_exhausted: the kills), and replays it.
func replayDead(t *testing.T, client *nightshift.Client, dead []*job) []*job {
	t.Helper()
	var out []*job
	for _, j := range dead {
		var dl *record.DeadLetter
		testenv.WaitFor(t, time.Minute, "the dead-letter record of "+j.id, func() bool {
			var err error
			dl, err = client.DeadLetter(context.Background(), j.id)
			return err == nil
		})
		if dl.Reason != record.ReasonHostRetriesExhausted {
			t.Errorf("job %s died with reason %s (%s), want %s (only the storm's kills may kill a job)", j.id, dl.Reason, dl.Detail, record.ReasonHostRetriesExhausted)
			continue
		}
		if _, err := client.Replay(context.Background(), j.id); err != nil {
			t.Errorf("replay %s: %v", j.id, err)
			continue
		}
		out = append(out, j)
	}
	return out
}

// results are the final checks' counts.
type results struct {
	lost, corrupt, backwards                    int
	runs, multi, maxRuns, dupFinished, overlaps int
}

// check reads every job's final status and result and its run records, failing the test
// for each job not succeeded (lost), each result that is not Expected(args) (corrupt),
// each record that does not decode, and each status observed going backwards.
func check(t *testing.T, client *nightshift.Client, runsDir string, jobs []*job) results {
	t.Helper()
	var r results
	ctx := context.Background()
	listed, err := client.ListJobs(ctx, nightshift.JobFilter{Limit: len(jobs) + 100})
	if err != nil {
		t.Errorf("list the status records (each must decode): %v", err)
	} else if len(listed) != len(jobs) {
		t.Errorf("%d status records, want one per job (%d)", len(listed), len(jobs))
	}
	type final struct {
		st          *record.Status
		res         Result
		err, resErr error
	}
	finals := make([]final, len(jobs))
	each(len(jobs), func(i int) {
		f := &finals[i]
		if f.st, f.err = client.Status(ctx, jobs[i].id); f.err == nil && f.st.State == record.StateSucceeded {
			f.resErr = client.Result(ctx, jobs[i].id, &f.res)
		}
	})
	for i, j := range jobs {
		s, err, got := finals[i].st, finals[i].err, finals[i].res
		if err != nil || s.State != record.StateSucceeded {
			r.lost++
			t.Errorf("lost: job %s ended %v (%v)", j.id, stateOf(s), err)
			continue
		}
		if err := finals[i].resErr; err != nil || got != Expected(j.args) || s.Kind != Kind {
			r.corrupt++
			t.Errorf("corrupt: job %s (kind %s) result %+v (%v), want %+v", j.id, s.Kind, got, err, Expected(j.args))
		}
		if len(j.back) > 0 {
			r.backwards += len(j.back)
			t.Errorf("job %s: status went backwards: %s (observed %d statuses)", j.id, strings.Join(j.back, "; "), len(j.seen))
		}
		started, finished := Runs(runsDir, j.id)
		if started == 0 || len(finished) == 0 {
			t.Errorf("job %s succeeded but the handler recorded %d started and %d finished runs", j.id, started, len(finished))
		}
		r.runs += started
		r.maxRuns = max(r.maxRuns, started)
		if started > 1 {
			r.multi++
		}
		r.dupFinished += max(0, len(finished)-1)
		r.overlaps += overlapping(finished)
	}
	return r
}

// each calls fn(0) … fn(n-1), eight at a time.
func each(n int, fn func(i int)) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i := range n {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			fn(i)
		}()
	}
	wg.Wait()
}

func stateOf(s *record.Status) any {
	if s == nil {
		return "without a status"
	}
	return s.State
}

// overlapping counts the finished runs of one job that overlapped an earlier one in time.
func overlapping(runs []Run) int {
	sort.Slice(runs, func(a, b int) bool { return runs[a].Start.Before(runs[b].Start) })
	n := 0
	var end time.Time
	for _, r := range runs {
		if r.Start.Before(end) {
			n++
		}
		if r.End.After(end) {
			end = r.End
		}
	}
	return n
}

// The observer flags a status that goes backwards, and a terminal state that changes
// within its life, and accepts a replay's new life.
func TestObserveFlagsBackwards(t *testing.T) {
	st := func(state record.State, replay, attempt int) *record.Status {
		return &record.Status{JobID: "j", State: state, Replay: replay, Attempt: attempt}
	}
	ok := &job{id: "j"}
	for _, s := range []*record.Status{st(record.StateQueued, 0, 0), st(record.StateRunning, 0, 1), st(record.StateRunning, 0, 1),
		st(record.StateDead, 0, 1), st(record.StateQueued, 1, 0), st(record.StateRunning, 1, 1), st(record.StateSucceeded, 1, 1)} {
		ok.observe(s)
	}
	if len(ok.back) != 0 || len(ok.seen) != 6 {
		t.Errorf("forward sequence: back %v, seen %d", ok.back, len(ok.seen))
	}
	for _, seq := range [][]*record.Status{
		{st(record.StateRunning, 0, 1), st(record.StateQueued, 0, 1)},
		{st(record.StateRunning, 0, 2), st(record.StateRunning, 0, 1)},
		{st(record.StateSucceeded, 0, 1), st(record.StateDead, 0, 1)},
		{st(record.StateQueued, 1, 0), st(record.StateSucceeded, 0, 3)},
	} {
		j := &job{id: "j"}
		for _, s := range seq {
			j.observe(s)
		}
		if len(j.back) != 1 {
			t.Errorf("%s → %s: back %v", describe(seq[0]), describe(seq[1]), j.back)
		}
	}
}
