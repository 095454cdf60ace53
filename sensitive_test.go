package nightshift

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nightshift-jobs/nightshift/internal/testenv"
	"github.com/nightshift-jobs/nightshift/record"
	"github.com/nightshift-jobs/nightshift/storage"
)

type cardInfo struct {
	Number string `json:"number" nightshift:"sensitive"`
	Holder string `json:"holder"`
}

type chargeArgs struct {
	Amount int        `json:"amount"`
	Card   cardInfo   `json:"card"`
	Token  Secret     `json:"token"`
	Old    []cardInfo `json:"old,omitempty"`
	PIN    string     `json:"pin" nightshift:"sensitive"`
}

func (chargeArgs) Kind() string { return "test.charge" }

func TestSensitivePaths(t *testing.T) {
	type Embedded struct {
		Key string `nightshift:"sensitive"`
	}
	type deep struct {
		Embedded
		Skip   string            `json:"-" nightshift:"sensitive"`
		ByName map[string]Secret `json:"by_name"`
		Ptr    *cardInfo
		Plain  string `json:"plain"`
	}
	got := pathsOf(reflect.TypeFor[deep]())
	want := [][]string{{"Key"}, {"by_name", "*"}, {"Ptr", "number"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("paths = %v, want %v", got, want)
	}
	if p := pathsOf(reflect.TypeFor[addArgs]()); p != nil {
		t.Errorf("addArgs has no sensitive fields; got %v", p)
	}
	raw := `{"key":"k1","by_name":{"a":"s1","b":"s2"},"Ptr":{"number":"4111","holder":"Ann"},"plain":"ok","Skip":"x"}`
	red, changed, err := redactJSON(json.RawMessage(raw), got)
	if err != nil || !changed {
		t.Fatal(changed, err)
	}
	for _, leak := range []string{"k1", "s1", "s2", "4111"} {
		if strings.Contains(string(red), leak) {
			t.Errorf("%q survives: %s", leak, red)
		}
	}
	for _, keep := range []string{`"Ann"`, `"ok"`, `"Skip":"x"`} {
		if !strings.Contains(string(red), keep) {
			t.Errorf("%s lost: %s", keep, red)
		}
	}
	if _, _, err := redactJSON(json.RawMessage(`{"key":`), got); err == nil {
		t.Error("broken JSON redacted without an error")
	}
}

func TestSecretFormats(t *testing.T) {
	s := Secret("hunter2")
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("x", "s", s, "v", Sensitive("hunter2"))
	out := fmt.Sprintf("%v %s %q %#v %+v", s, s, s, s, struct{ S Secret }{s}) + buf.String()
	if strings.Contains(out, "hunter2") || s.Reveal() != "hunter2" {
		t.Errorf("secret shows: %s", out)
	}
	if b, _ := json.Marshal(s); string(b) != `"hunter2"` {
		t.Errorf("JSON = %s; args must still carry the value", b)
	}
}

// TestSensitiveArgsRedacted: a kind's sensitive args fields and Secret values appear in
// no log (captured or process), no status record and no dead-letter record, while the
// job — and its replay — get the real values.
func TestSensitiveArgsRedacted(t *testing.T) {
	t.Parallel()
	t.Run("plain", func(t *testing.T) { testSensitiveArgsRedacted(t, false) })
	// With encryption at rest the args travel sealed; the dead-letter record still shows
	// them redacted when the CLI opens it.
	t.Run("sealed", func(t *testing.T) { testSensitiveArgsRedacted(t, true) })
}

func testSensitiveArgsRedacted(t *testing.T, sealed bool) {
	te := newTestEnv(t)
	if sealed {
		te.store = storeWithKeys(t, te.store, "k1:"+newKey(t))
	}
	ctx := context.Background()
	plog := &testenv.LogBuffer{}
	reg := NewRegistry()
	var seen []chargeArgs
	var mu sync.Mutex
	AddWorkerFunc(reg, func(ctx context.Context, j *Job[chargeArgs]) (any, error) {
		mu.Lock()
		seen = append(seen, j.Args)
		mu.Unlock()
		j.Logger.Info("charging", "args", j.Args, "token", j.Args.Token, "card", Sensitive(j.Args.Card.Number))
		j.Logger.With("again", &j.Args).Warn("with attrs", slog.Group("g", "args", j.Args))
		if j.Replay == 0 {
			return nil, Permanentf("declined for token %v", j.Args.Token)
		}
		return map[string]string{"charged": j.Args.Card.Holder}, nil
	}, nil)
	te.h = NewHandler(reg, te.store, &HandlerOptions{Logger: slog.New(slog.NewJSONHandler(plog, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	te.srv.Config.Handler = te.h
	secrets := []string{"4111111111111111", "tok_live_abc", "9876", "4000000000000002"}
	args := chargeArgs{Amount: 42, Card: cardInfo{Number: secrets[0], Holder: "Ann"}, Token: Secret(secrets[1]), PIN: secrets[2],
		Old: []cardInfo{{Number: secrets[3], Holder: "Ann"}}}
	client := NewClient(te.store, nil)
	res, err := client.Enqueue(ctx, args, &EnqueueOptions{JobID: "charge-1"})
	if err != nil {
		t.Fatal(err)
	}
	if code, _, raw := te.deliver(FunctionRunJob, te.jobs(), 5*time.Second); code != 200 {
		t.Fatalf("deliver: %d %s", code, raw)
	}
	if code, _, raw := te.deliver(FunctionRunDeadLetter, te.poison(), 5*time.Second); code != 200 {
		t.Fatalf("deliver dead letter: %d %s", code, raw)
	}
	l := te.store.Layout
	stRaw := readBlob(t, te.store, l.StatusContainer(), storage.StatusBlob(res.JobID))
	dlRaw := readBlob(t, te.store, l.DeadLettersContainer(), record.DeadLetterBlob(res.JobID))
	if sealed { // what an operator with the key sees: the record, opened
		dl, err := client.DeadLetter(ctx, res.JobID)
		if err != nil || dl.Envelope == nil || len(dl.Envelope.ArgsSealed) != 0 {
			t.Fatalf("dead letter %+v %v: want the args redacted in the clear, not sealed", dl, err)
		}
		b, _ := json.Marshal(dl)
		dlRaw = string(b)
		st, _, err := te.store.GetStatus(ctx, res.JobID)
		if err != nil {
			t.Fatal(err)
		}
		b, _ = json.Marshal(st)
		stRaw = string(b)
	}
	for what, text := range map[string]string{"status": stRaw, "dead letter": dlRaw, "process log": plog.String()} {
		for _, s := range secrets {
			if strings.Contains(text, s) {
				t.Errorf("the %s shows %q:\n%s", what, s, text)
			}
		}
	}
	// The status shows the args the way the dead letter does, unless they are sealed.
	if st := te.status(res.JobID); sealed != (len(st.Args) == 0) || (!sealed && !strings.Contains(string(st.Args), `"amount":42`)) {
		t.Errorf("status args %s: want them shown, redacted, unless sealed (sealed %v)", st.Args, sealed)
	}
	if !strings.Contains(stRaw, "charging") || !strings.Contains(stRaw, Redacted) || !strings.Contains(dlRaw, `"amount":42`) || !strings.Contains(dlRaw, "Ann") {
		t.Errorf("the records lost what is not sensitive:\n%s\n%s", stRaw, dlRaw)
	}
	// A replay runs with the real values, from the job's own payload blob.
	if _, err := client.Replay(ctx, res.JobID); err != nil {
		t.Fatal(err)
	}
	if code, _, raw := te.deliver(FunctionRunJob, te.jobs(), 5*time.Second); code != 200 {
		t.Fatalf("deliver replay: %d %s", code, raw)
	}
	if st := te.status(res.JobID); st.State != record.StateSucceeded {
		t.Fatalf("replay: %s %s", st.State, st.LastError)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 2 || !reflect.DeepEqual(seen[0], args) || !reflect.DeepEqual(seen[1], args) {
		t.Errorf("the worker saw %+v, want the real args twice", seen)
	}
}

func readBlob(t *testing.T, store *storage.Clients, container, name string) string {
	t.Helper()
	resp, err := testenv.BlobService(store).DownloadStream(context.Background(), container, name, nil)
	if err != nil {
		t.Fatal(errors.Join(fmt.Errorf("%s/%s", container, name), err))
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
