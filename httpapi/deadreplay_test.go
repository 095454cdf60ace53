package httpapi_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/envelope"
	"github.com/nightshift-jobs/nightshift/httpapi"
	"github.com/nightshift-jobs/nightshift/internal/store"
	"github.com/nightshift-jobs/nightshift/internal/testenv"
	"github.com/nightshift-jobs/nightshift/record"
)

// victimArgs is a healthy job whose deliveries a crash storm used up before any reached a
// handler; pillArgs kills its handler process on every run; permArgs fails for good.
type victimArgs struct{}

func (victimArgs) Kind() string { return "api.victim" }

type pillArgs struct{}

func (pillArgs) Kind() string { return "api.pill" }

type permArgs struct{}

func (permArgs) Kind() string { return "api.perm" }

// newStormEnv is the API over a handler that runs the crash-storm kinds.
func newStormEnv(t *testing.T) *env {
	t.Helper()
	store := testenv.Clients(t)
	reg := nightshift.NewRegistry()
	nightshift.AddWorkerFunc(reg, func(ctx context.Context, j *nightshift.Job[victimArgs]) (any, error) {
		return map[string]int{"life": j.Replay}, nil
	}, nil)
	nightshift.AddWorkerFunc(reg, func(ctx context.Context, j *nightshift.Job[pillArgs]) (any, error) {
		runtime.Goexit() // the process dies
		return nil, nil
	}, nil)
	nightshift.AddWorkerFunc(reg, func(ctx context.Context, j *nightshift.Job[permArgs]) (any, error) {
		return nil, nightshift.Permanentf("bad input")
	}, nil)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	h := nightshift.NewHandler(reg, store, &nightshift.HandlerOptions{Logger: quiet, RunningAfter: time.Hour})
	client := nightshift.NewClient(store, nil)
	httpapi.New(client, &httpapi.Options{Kinds: reg.Kinds, Logger: quiet}).Register(h)
	return &env{t: t, store: store, client: client, h: h}
}

// stormReaches: no delivery of an api.victim job reaches the handler; all others do.
func stormReaches(m store.Message) bool {
	env, err := envelope.Decode([]byte(m.Text))
	return err != nil || env.Kind != victimArgs{}.Kind()
}

const deadReplayURL = "https://app.example.test/api/dead/replay"

func (e *env) deadReplay(body string) response {
	return e.call(httpapi.FunctionDeadReplay, "POST", deadReplayURL, body, nil, nil)
}

type replayAnswer struct {
	Matched, Taken, Remaining, Replayed, Skipped, Failed int
	Outcomes                                             []nightshift.DeadReplayOutcome
	Next                                                 string
	DryRun                                               bool `json:"dry_run"`
}

func (r response) replay(t *testing.T) replayAnswer {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("POST /api/dead/replay = %d %s", r.status, r.body)
	}
	var a replayAnswer
	if err := json.Unmarshal(r.body, &a); err != nil {
		t.Fatalf("body %s: %v", r.body, err)
	}
	return a
}

// TestDeadReplayAPI: after a crash storm, POST /api/dead/replay with the crash filters
// replays the crash-caused dead letters in bounded steps (limit, next); they succeed, and
// the job-caused ones stay dead with no replay counted. The answers name only records of
// the selection.
func TestDeadReplayAPI(t *testing.T) {
	e := newStormEnv(t)
	ctx := context.Background()
	jobs := map[string]nightshift.JobArgs{"v-1": victimArgs{}, "v-2": victimArgs{}, "v-3": victimArgs{}, "the-pill": pillArgs{}, "the-perm": permArgs{}}
	for id, args := range jobs {
		if _, err := e.client.Enqueue(ctx, args, &nightshift.EnqueueOptions{JobID: id}); err != nil {
			t.Fatal(err)
		}
	}
	q := e.store.Layout.JobsQueue()
	testenv.CrashStorm(t, e.store, e.h, nightshift.FunctionRunJob, q, nightshift.DefaultMaxDequeueCount, stormReaches)
	testenv.Drain(t, e.store, e.h, q, nightshift.FunctionRunJob, nightshift.FunctionRunDeadLetter)

	const filters = `"reason":"host_retries_exhausted","cause":"crash","since":"1h"`
	dry := e.deadReplay(`{` + filters + `,"dry_run":true}`).replay(t)
	if !dry.DryRun || dry.Taken != 3 || dry.Replayed != 0 || dry.Next != "" {
		t.Fatalf("dry run: %+v", dry)
	}
	first := e.deadReplay(`{` + filters + `,"limit":2}`)
	a := first.replay(t)
	if a.Matched != 3 || a.Taken != 2 || a.Replayed != 2 || a.Remaining != 1 || a.Next == "" || len(a.Outcomes) != 2 {
		t.Fatalf("first step: %+v", a)
	}
	b := e.deadReplay(`{` + filters + `,"limit":2,"after":"` + a.Next + `"}`).replay(t)
	if b.Matched != 1 || b.Taken != 1 || b.Replayed != 1 || b.Remaining != 0 || b.Next != "" {
		t.Fatalf("second step: %+v", b)
	}
	seen := map[string]bool{}
	for _, o := range append(a.Outcomes, b.Outcomes...) {
		if !strings.HasPrefix(o.JobID, "v-") || o.Replay != 1 || seen[o.JobID] {
			t.Errorf("outcome %+v", o)
		}
		seen[o.JobID] = true
	}
	if strings.Contains(string(first.body), "the-pill") || strings.Contains(string(first.body), "the-perm") {
		t.Errorf("the answer names records outside the selection: %s", first.body)
	}
	e.runJobs()
	testenv.Drain(t, e.store, e.h, q, nightshift.FunctionRunJob, nightshift.FunctionRunDeadLetter)
	for id := range jobs {
		st, err := e.client.Status(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		d, _ := e.client.DeadLetter(ctx, id)
		victim := strings.HasPrefix(id, "v-")
		switch {
		case victim && (st.State != record.StateSucceeded || st.Replay != 1 || d.Replays != 1):
			t.Errorf("%s after the replay: %s life %d, %d replays", id, st.State, st.Replay, d.Replays)
		case !victim && (st.State != record.StateDead || st.Replay != 0 || d.Replays != 0):
			t.Errorf("%s was touched: %s life %d, %d replays", id, st.State, st.Replay, d.Replays)
		}
	}
	// The same request again skips what was replayed: no job runs twice.
	if again := e.deadReplay(`{` + filters + `}`).replay(t); again.Replayed != 0 || again.Skipped != 3 {
		t.Fatalf("again: %+v", again)
	}
}

// TestDeadReplayAPIProblems: bad requests are problem documents naming the field; none
// lists kinds, ids or other records.
func TestDeadReplayAPIProblems(t *testing.T) {
	e := newStormEnv(t)
	for _, c := range []struct {
		body, kind, detail, field, problem string
		status                             int
	}{
		{``, "invalid-request", "the body is empty", "", "", 400},
		{`{}`, "invalid-request", "give a filter", "all", "all: true", 400},
		{`{"reason":"nope"}`, "invalid-request", "not a reason", "reason", "host_retries_exhausted", 400},
		{`{"cause":"storm"}`, "invalid-request", "neither crash nor job", "cause", "neither", 400},
		{`{"kind":"api.victim","limit":101}`, "invalid-request", "limit", "limit", "100", 400},
		{`{"since":"-1h"}`, "invalid-request", "since", "since", "more than 0", 400},
		{`{"since":"yesterday"}`, "invalid-request", "since", "since", "RFC 3339", 400},
		{`{"cause":"crash","colour":"red"}`, "invalid-request", "unknown field", "colour", "unknown field", 400},
		{`{"cause":"crash","cause":"job"}`, "invalid-request", "cause", "cause", "", 400},
		{`{"cause":"crash","after":"dr1.bm9wZQ"}`, "invalid-request", "after", "after", "not a continuation", 400},
		{`{"cause":"crash","after":"forged"}`, "invalid-request", "after", "after", "not a continuation", 400},
		{`{"kind":"no such kind!"}`, "invalid-request", "kind", "kind", "", 400},
		{`{"kind":"` + strings.Repeat("k", 5000) + `"}`, "too-large", "at most", "", "", 413},
	} {
		r := e.deadReplay(c.body)
		fields := []string{}
		if c.field != "" {
			fields = []string{c.field, c.problem}
		}
		checkProblem(t, r, c.status, c.kind, c.detail, fields...)
		if strings.Contains(string(r.body), "api.pill") || strings.Contains(string(r.body), "api.perm") {
			t.Errorf("%s: the problem lists the app's kinds: %s", c.body, r.body)
		}
	}
	r := e.call(httpapi.FunctionDeadReplay, "GET", deadReplayURL, "", nil, nil)
	checkProblem(t, r, http.StatusMethodNotAllowed, "method-not-allowed", "use POST")
	r = e.call(httpapi.FunctionDeadReplay, "POST", deadReplayURL, `{"all":true}`, nil, map[string][]string{"Content-Type": {"text/plain"}})
	checkProblem(t, r, http.StatusUnsupportedMediaType, "unsupported-media-type", "application/json")
	// A kind no record has is a selection of nothing, not an error that says which kinds exist.
	if a := e.deadReplay(`{"kind":"api.other","all":true}`).replay(t); a.Matched != 0 || a.Taken != 0 {
		t.Fatalf("unknown kind: %+v", a)
	}
}
