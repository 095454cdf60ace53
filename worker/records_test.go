package worker_test

import (
	"context"
	"encoding/json"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/nightshift-jobs/nightshift/internal/testenv"
	"github.com/nightshift-jobs/nightshift/record"
	"github.com/nightshift-jobs/nightshift/storage"
)

// timeKeys are the record fields that hold times or host-given ids: what differs between
// two runs of the same job whichever mode runs it.
var timeKeys = map[string]bool{
	"enqueued_at": true, "started_at": true, "finished_at": true, "updated_at": true, "next_run_at": true,
	"duration_ms": true, "died_at": true, "poison_inserted_at": true, "replayed_at": true, "run_at": true,
	"t": true, "at": true, "poison_message_id": true,
}

// normalize decodes a record into generic JSON with the time fields removed and the
// fleet's name prefix replaced by "<prefix>".
func normalize(t *testing.T, v any, prefix string) any {
	t.Helper()
	b, err := json.Marshal(v)
	must(t, err)
	b = []byte(strings.ReplaceAll(string(b), prefix, "<prefix>"))
	var g any
	must(t, json.Unmarshal(b, &g))
	var strip func(any) any
	strip = func(x any) any {
		switch x := x.(type) {
		case map[string]any:
			for k, v := range x {
				if timeKeys[k] {
					delete(x, k)
					continue
				}
				x[k] = strip(v)
			}
		case []any:
			for i := range x {
				x[i] = strip(x[i])
			}
		}
		return x
	}
	return strip(g)
}

// diff lists the fields where a and b differ, by JSON path.
func diff(path string, a, b any) []string {
	am, aok := a.(map[string]any)
	bm, bok := b.(map[string]any)
	if aok && bok {
		keys := map[string]bool{}
		for k := range am {
			keys[k] = true
		}
		for k := range bm {
			keys[k] = true
		}
		var out []string
		for k := range keys {
			out = append(out, diff(path+"."+k, am[k], bm[k])...)
		}
		sort.Strings(out)
		return out
	}
	as, aok := a.([]any)
	bs, bok := b.([]any)
	if aok && bok && len(as) == len(bs) {
		var out []string
		for i := range as {
			out = append(out, diff(path+"["+string(rune('0'+i))+"]", as[i], bs[i])...)
		}
		return out
	}
	if !reflect.DeepEqual(a, b) {
		ja, _ := json.Marshal(a)
		jb, _ := json.Marshal(b)
		return []string{path + ": worker " + string(ja) + ", functions " + string(jb)}
	}
	return nil
}

// sameJobs enqueues the same jobs (same ids) on f and waits until each has ended and every
// dead one has its dead letter.
func sameJobs(t *testing.T, f *fleet) map[string]*record.Status {
	t.Helper()
	jobs := []struct{ id, kind, args string }{
		{"same-noop", "test.noop", `{"n":7}`},
		{"same-fail", "test.fail", `{}`},
		{"same-permanent", "test.permanent", `{}`},
		{"same-unknown", "test.nosuch", `{"x":1}`},
	}
	for _, j := range jobs {
		f.enqueue(j.kind, j.args, j.id)
	}
	out := map[string]*record.Status{}
	dead := 0
	for _, j := range jobs {
		if st := f.wait(j.id); st.State == record.StateDead {
			dead++
		}
	}
	ctx := context.Background()
	testenv.WaitFor(t, 2*time.Minute, "the dead letters", func() bool {
		dls, err := f.client.DeadLetters(ctx)
		return err == nil && len(dls) == dead
	})
	for _, j := range jobs {
		st, _, err := f.clients.GetStatus(ctx, j.id)
		must(t, err)
		out[j.id] = st
	}
	return out
}

// TestSameRecordsInWorkerAndFunctionsMode runs the same jobs through a worker and through
// the local Functions host (the same handler binary as its custom handler), each on its
// own name prefix, and compares the status and dead-letter records field by field, times
// aside.
func TestSameRecordsInWorkerAndFunctionsMode(t *testing.T) {
	t.Parallel()
	wf := newFleet(t, "", fastHostJSON(0, 0))
	hf := newFleet(t, "", fastHostJSON(0, 0))
	w := wf.startWorker([]string{"--no-timers"})
	hf.startLocalHost()
	got := map[string]map[string]*record.Status{"worker": sameJobs(t, wf), "functions": sameJobs(t, hf)}
	ctx := context.Background()
	for id, ws := range got["worker"] {
		hs := got["functions"][id]
		nw := normalize(t, ws, wf.settings[storage.SettingNamePrefix])
		for _, d := range diff(id, nw, normalize(t, hs, hf.settings[storage.SettingNamePrefix])) {
			t.Errorf("status %s", d)
		}
		if b, _ := json.Marshal(nw); testing.Verbose() {
			t.Logf("%s", b)
		}
		if ws.DeadLetter == "" {
			continue
		}
		wd, err := wf.client.DeadLetter(ctx, strings.TrimSuffix(ws.DeadLetter, ".json"))
		must(t, err)
		hd, err := hf.client.DeadLetter(ctx, strings.TrimSuffix(hs.DeadLetter, ".json"))
		must(t, err)
		for _, d := range diff(id, normalize(t, wd, wf.settings[storage.SettingNamePrefix]), normalize(t, hd, hf.settings[storage.SettingNamePrefix])) {
			t.Errorf("dead letter %s", d)
		}
	}
	if n := len(got["worker"]); n != 4 {
		t.Fatalf("%d records compared, want 4", n)
	}
	w.term()
	if code := w.wait(); code != 0 {
		t.Errorf("worker exit code %d", code)
	}
}

func TestDiffFindsTheFieldThatDiffers(t *testing.T) {
	a := normalize(t, &record.Status{JobID: "j", State: record.StateSucceeded, Attempt: 1, UpdatedAt: time.Now()}, "tzzprefix")
	b := normalize(t, &record.Status{JobID: "j", State: record.StateSucceeded, Attempt: 2}, "tzzprefix")
	if d := diff("j", a, b); len(d) != 1 || !strings.HasPrefix(d[0], "j.attempt:") {
		t.Fatalf("diff = %v, want only j.attempt (updated_at is a time)", d)
	}
}
