package nightshift

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nightshift-jobs/nightshift/internal/testenv"
	"github.com/nightshift-jobs/nightshift/storage"
)

// A process that dies holding concurrency slots (it stops renewing and never releases)
// frees them within the slot lease: another process finds the limit full, then gets a
// slot within DefaultSlotLease of the death.
func TestConcurrencySlotOfADeadHolderFreesWithinTheLease(t *testing.T) {
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			c := b.Clients(t)
			ctx := context.Background()
			log := slog.New(slog.NewTextHandler(io.Discard, nil))
			dead := &slots{s: c.Store(), container: c.Layout.UniqueContainer(), log: log}
			alive := &slots{s: c.Store(), container: c.Layout.UniqueContainer(), log: log}
			const n = 3
			for i := range n {
				h, err := dead.acquire(ctx, "test.flow.crash", "k", n, DefaultSlotLease)
				if err != nil || h == nil {
					t.Fatalf("slot %d: %v %v", i, h, err)
				}
				h.abandon() // the process dies: no renewal, no release
			}
			died := time.Now()
			if h, err := alive.acquire(ctx, "test.flow.crash", "k", n, DefaultSlotLease); err != nil || h != nil {
				t.Fatalf("a full limit gave a slot: %v %v", h, err)
			}
			if h, err := alive.acquire(ctx, "test.flow.crash", "other", n, DefaultSlotLease); err != nil || h == nil {
				t.Fatalf("a key of its own found its slots taken: %v %v", h, err)
			} else {
				h.release()
			}
			var got *heldSlot
			testenv.WaitFor(t, DefaultSlotLease+10*time.Second, "a slot of the dead holder", func() bool {
				h, err := alive.acquire(ctx, "test.flow.crash", "k", n, DefaultSlotLease)
				if err != nil {
					t.Fatal(err)
				}
				got = h
				return h != nil
			})
			t.Logf("%s: a slot was free again %s after its holder died (bound %s)", b.Name, time.Since(died).Round(100*time.Millisecond), DefaultSlotLease)
			// The dead holder's other slots come free within the bound too (they were taken a
			// little later, so they may expire a little later).
			held := []*heldSlot{got}
			testenv.WaitFor(t, DefaultSlotLease+10*time.Second, "every slot of the dead holder", func() bool {
				h, err := alive.acquire(ctx, "test.flow.crash", "k", n, DefaultSlotLease)
				if err != nil {
					t.Fatal(err)
				}
				if h != nil {
					held = append(held, h)
				}
				return len(held) == n
			})
			// A released slot is free at once.
			held[0].release()
			h, err := alive.acquire(ctx, "test.flow.crash", "k", n, DefaultSlotLease)
			if err != nil || h == nil {
				t.Fatalf("a released slot was not free at once: %v %v", h, err)
			}
			held[0] = h
			for _, h := range held {
				h.release()
			}
		})
	}
}

// The limit key is the KeyArg field's value: strings as they are, other values as JSON.
func TestLimitKey(t *testing.T) {
	for _, c := range []struct{ args, arg, want string }{
		{`{"customer":"acme","n":1}`, "customer", "acme"},
		{`{"customer": 42}`, "customer", "42"},
		{`{"customer": {"a": 1}}`, "customer", `{"a":1}`},
		{`{"n":1}`, "customer", ""},
		{`[1,2]`, "customer", ""},
		{`{"customer":"acme"}`, "", ""},
	} {
		if got := limitKey([]byte(c.args), c.arg); got != c.want {
			t.Errorf("limitKey(%s, %q) = %q, want %q", c.args, c.arg, got, c.want)
		}
	}
}

// Limits a kind cannot have are refused at registration.
func TestLimitsChecked(t *testing.T) {
	for _, l := range []Limits{{Concurrency: -1}, {Concurrency: maxSlots + 1}, {Concurrency: 1, SlotLease: time.Second}, {Wait: -time.Second}} {
		if err := AddWorkerSafely(NewRegistry(), WorkFunc[hookArgs](func(context.Context, *Job[hookArgs]) (any, error) { return nil, nil }),
			&WorkerOptions{Limits: l}); err == nil {
			t.Errorf("limits %+v accepted", l)
		}
	}
}

// Two processes reserving starts of one rate limit at once get starts at least Per/Rate
// apart: the conditional writes serialise them (checked at admission, on both drivers).
func TestRateLimitReservationsAreSpaced(t *testing.T) {
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			c := b.Clients(t)
			log := slog.New(slog.NewTextHandler(io.Discard, nil))
			lim := Limits{Rate: 20, Per: time.Second}
			var mu sync.Mutex
			var at []time.Time
			var wg sync.WaitGroup
			for range 2 {
				sl := &slots{s: c.Store(), container: c.Layout.UniqueContainer(), log: log}
				wg.Add(1)
				go func() {
					defer wg.Done()
					for n := 0; n < 10; {
						when, ok, err := sl.takeStart(context.Background(), "test.flow.rate", "", lim)
						if err != nil {
							t.Error(err)
							return
						}
						if !ok {
							continue // lost every conditional write to the other process
						}
						n++
						mu.Lock()
						at = append(at, when)
						mu.Unlock()
					}
				}()
			}
			wg.Wait()
			slices.SortFunc(at, func(a, b time.Time) int { return a.Compare(b) })
			interval := lim.Per / time.Duration(lim.Rate)
			for i := 1; i < len(at); i++ {
				if gap := at[i].Sub(at[i-1]); gap < interval {
					t.Errorf("starts %d and %d are %s apart, want ≥ %s", i-1, i, gap, interval)
				}
			}
			if len(at) != 20 {
				t.Fatalf("%d reservations", len(at))
			}
		})
	}
}

// NIGHTSHIFT_LIMITS parses into Limits (durations as strings or seconds), refuses unknown
// fields and impossible limits, and Limits marshal back as the setting spells them.
func TestParseLimits(t *testing.T) {
	m, err := ParseLimits(`{"import": {"concurrency": 5, "key_arg": "customer_id", "rate": 10, "per": "2s", "wait": 1.5, "slot_lease": "30s"}}`)
	if err != nil {
		t.Fatal(err)
	}
	want := Limits{Concurrency: 5, KeyArg: "customer_id", Rate: 10, Per: 2 * time.Second, Wait: 1500 * time.Millisecond, SlotLease: 30 * time.Second}
	if m["import"] != want {
		t.Fatalf("got %+v, want %+v", m["import"], want)
	}
	b, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	if back, err := ParseLimits(`{"import":` + string(b) + `}`); err != nil || back["import"] != want {
		t.Fatalf("round trip %s: %+v %v", b, back, err)
	}
	for _, bad := range []string{`{"import": {"concurency": 5}}`, `{"import": {"concurrency": -1}}`, `{"import": {"per": "soon"}}`, `[]`, `{"import": {"slot_lease": "5s", "concurrency": 1}}`} {
		if _, err := ParseLimits(bad); err == nil || !strings.Contains(err.Error(), SettingLimits) {
			t.Errorf("%s: %v", bad, err)
		}
	}
	if m, err := ParseLimits(""); err != nil || len(m) != 0 {
		t.Fatalf("empty: %v %v", m, err)
	}
}

// NewApp applies NIGHTSHIFT_LIMITS over the kinds' Go limits, and refuses a kind it does
// not register, naming the setting.
func TestLimitsSettingAppliedByNewApp(t *testing.T) {
	reg := NewRegistry()
	AddWorkerFunc(reg, func(context.Context, *Job[hookArgs]) (any, error) { return nil, nil }, &WorkerOptions{Limits: Limits{Concurrency: 9}})
	env := map[string]string{SettingLimits: `{"test.hooks": {"rate": 3}}`}
	if _, err := NewApp(reg, Config{Store: testenv.Memory(t), Getenv: func(k string) string { return env[k] }}); err != nil {
		t.Fatal(err)
	}
	if got := reg.Limits()["test.hooks"]; got != (Limits{Rate: 3}) {
		t.Fatalf("limits %+v", got)
	}
	env[SettingLimits] = `{"test.other": {"rate": 3}}`
	if _, err := NewApp(reg, Config{Store: testenv.Memory(t), Getenv: func(k string) string { return env[k] }}); err == nil || !strings.Contains(err.Error(), SettingLimits) {
		t.Fatalf("unregistered kind: %v", err)
	}
}

type oneAtATimeArgs struct {
	Customer string `json:"customer"`
}

func (oneAtATimeArgs) Kind() string { return "test.flow.one" }

// Through the pipeline (memory driver): a job whose key has no free slot is throttled —
// put back on its queue, same attempt, no status write — and a job that ran frees its
// slot when its delivery ends.
func TestThrottledDeliveryIsNotAnAttempt(t *testing.T) {
	c := testenv.Memory(t)
	reg := NewRegistry()
	runs := 0
	AddWorkerFunc(reg, func(context.Context, *Job[oneAtATimeArgs]) (any, error) { runs++; return nil, nil },
		&WorkerOptions{Limits: Limits{Concurrency: 1, KeyArg: "customer"}})
	h := NewHandler(reg, c, &HandlerOptions{Logger: slog.New(slog.DiscardHandler)})
	ctx := context.Background()
	sl := &slots{s: c.Store(), container: c.Layout.UniqueContainer(), log: slog.New(slog.DiscardHandler)}
	held, err := sl.acquire(ctx, "test.flow.one", "acme", 1, DefaultSlotLease)
	if err != nil || held == nil {
		t.Fatalf("slot: %v %v", held, err)
	}
	q := c.Layout.JobsQueue()
	d := delivery{Queue: q, Body: []byte(`{"job_id":"flow-one","kind":"test.flow.one","attempt":1,"args":{"customer":"acme"}}`)}
	if out := h.exec.runJob(ctx, d); out.Err != nil || out.Outcome != "throttled" {
		t.Fatalf("outcome %+v", out)
	}
	if n, err := c.Store().Count(ctx, q); err != nil || n != 1 || runs != 0 {
		t.Fatalf("queue holds %d (%v), runs %d", n, err, runs)
	}
	if _, _, err := c.GetStatus(ctx, "flow-one"); err == nil {
		t.Fatal("a throttled job wrote a status")
	}
	other := delivery{Queue: q, Body: []byte(`{"job_id":"flow-two","kind":"test.flow.one","attempt":1,"args":{"customer":"globex"}}`)}
	if out := h.exec.runJob(ctx, other); out.Outcome != "succeeded" || runs != 1 {
		t.Fatalf("another key: %+v, runs %d", out, runs)
	}
	held.release()
	if out := h.exec.runJob(ctx, d); out.Outcome != "succeeded" || runs != 2 {
		t.Fatalf("after release: %+v, runs %d", out, runs)
	}
	if st, _, err := c.GetStatus(ctx, "flow-one"); err != nil || st.Attempt != 1 {
		t.Fatalf("status %+v %v", st, err)
	}
	// Its slot is free again: the delivery released it.
	again, err := sl.acquire(ctx, "test.flow.one", "acme", 1, DefaultSlotLease)
	if err != nil || again == nil {
		t.Fatalf("slot after the job: %v %v", again, err)
	}
	again.release()
}

type countedArgs struct {
	Customer string `json:"customer"`
}

func (countedArgs) Kind() string { return "test.flow.counted" }

// A quick job under a concurrency and a rate limit costs the handler 5 storage calls
// instead of 1, once its slot blob exists: lease acquire, rate read, rate write, status
// write, lease release (its first delivery reads no status) (docs/flow-control.md "What it costs").
func TestStorageCallsPerLimitedJob(t *testing.T) {
	ct := &countingTransport{next: http.DefaultClient}
	c, err := storage.FromEnv(testenv.Env(t), &storage.Options{Transport: ct})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Ensure(context.Background()); err != nil {
		t.Fatal(err)
	}
	reg := NewRegistry()
	AddWorkerFunc(reg, func(context.Context, *Job[countedArgs]) (any, error) { return nil, nil },
		&WorkerOptions{Limits: Limits{Concurrency: 1, KeyArg: "customer", Rate: 1000}})
	h := NewHandler(reg, c, &HandlerOptions{Logger: slog.New(slog.DiscardHandler)})
	runOne := func(id string) []string {
		ct.mu.Lock()
		ct.calls = nil
		ct.mu.Unlock()
		d := delivery{Queue: c.Layout.JobsQueue(), Body: []byte(`{"job_id":"` + id + `","kind":"test.flow.counted","args":{"customer":"acme"}}`)}
		if out := h.exec.runJob(context.Background(), d); out.Outcome != "succeeded" {
			t.Fatalf("outcome %+v", out)
		}
		ct.mu.Lock()
		defer ct.mu.Unlock()
		return slices.Clone(ct.calls)
	}
	runOne("limited-0") // creates the slot and rate blobs, reads the pauses
	calls := runOne("limited-1")
	want := []string{"PUT nightshift-unique/flow/slots", "GET nightshift-unique/flow/rate", "PUT nightshift-unique/flow/rate",
		"PUT nightshift-status", "PUT nightshift-unique/flow/slots"}
	if len(calls) != len(want) {
		t.Fatalf("storage calls: %q", calls)
	}
	for i, w := range want {
		method, where, _ := strings.Cut(w, " ")
		if !strings.HasPrefix(calls[i], method+" ") || !strings.Contains(calls[i], where) {
			t.Fatalf("call %d is %q, want %s …%s…; all: %q", i, calls[i], method, where, calls)
		}
	}
}
