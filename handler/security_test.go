package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/internal/testenv"
	"github.com/nightshift-jobs/nightshift/record"
	"github.com/nightshift-jobs/nightshift/storage"
)

// kindsEnv is the shipped handler's registry and queue handler on a fresh prefix, wired
// by register from the given settings, with its log captured.
type kindsEnv struct {
	store  *storage.Clients
	client *nightshift.Client
	h      *nightshift.Handler
	log    *testenv.LogBuffer
}

// newKindsEnv builds it; settings(store) returns the extra settings once the prefixed
// names are known.
func newKindsEnv(t *testing.T, settings func(*storage.Clients) map[string]string) *kindsEnv {
	t.Helper()
	base := testenv.Env(t)
	store, err := storage.FromEnv(base, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Ensure(context.Background()); err != nil {
		t.Fatal(err)
	}
	extra := settings(store)
	getenv := func(k string) string {
		if v, ok := extra[k]; ok {
			return v
		}
		return base(k)
	}
	reg := nightshift.NewRegistry()
	if err := register(reg, store, getenv); err != nil {
		t.Fatal(err)
	}
	log := &testenv.LogBuffer{}
	h := nightshift.NewHandler(reg, store, &nightshift.HandlerOptions{Logger: slog.New(slog.NewJSONHandler(log, nil))})
	return &kindsEnv{store: store, client: nightshift.NewClient(store, nil), h: h, log: log}
}

// run enqueues one job, plays the host's queue triggers until the queues are empty and
// returns the job's status.
func (e *kindsEnv) run(t *testing.T, id, kind, args string, maxAttempts int) *record.Status {
	t.Helper()
	ctx := context.Background()
	if _, err := e.client.EnqueueRaw(ctx, kind, json.RawMessage(args), &nightshift.EnqueueOptions{JobID: id, MaxAttempts: maxAttempts}); err != nil {
		t.Fatal(err)
	}
	testenv.Drain(t, e.store, e.h, e.store.Layout.JobsQueue(), "RunJob", "RunDeadLetter")
	st, _, err := e.store.GetStatus(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// everything returns all an API caller or operator can see of a job: its status (with
// result and logs), its result blob, its dead letter and the handler's log.
func (e *kindsEnv) everything(t *testing.T, st *record.Status) string {
	t.Helper()
	ctx := context.Background()
	raw, _ := json.Marshal(st)
	out := string(raw) + "\n" + e.log.String()
	if st.Result != nil {
		if _, data, err := e.store.GetResult(ctx, st); err == nil {
			out += "\n" + string(data)
		}
	}
	if st.DeadLetter != "" {
		dl, _, err := e.store.GetDeadLetter(ctx, strings.TrimSuffix(st.DeadLetter, ".json"))
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := json.Marshal(dl)
		out += "\n" + string(raw)
	}
	return out
}

func upload(t *testing.T, store *storage.Clients, container, blob, content string) {
	t.Helper()
	ctx := context.Background()
	if _, err := testenv.BlobService(store).CreateContainer(ctx, container, nil); err != nil && !strings.Contains(err.Error(), "ContainerAlreadyExists") {
		t.Fatal(err)
	}
	if _, err := testenv.BlobService(store).UploadBuffer(ctx, container, blob, []byte(content), nil); err != nil {
		t.Fatal(err)
	}
}

// Issue 10 finding 2: csv_stats read any container the app's identity can, e.g. another
// app's .env (its first line came back as a column name). Now only the containers of
// NIGHTSHIFT_CSV_CONTAINERS are read; anything else is a dead job whose error names the
// setting, not the containers it lists, and the foreign blob's content appears nowhere.
func TestCSVStatsReadsOnlyListedContainers(t *testing.T) {
	const secret = "DATABASE_PASSWORD=hunter2-do-not-leak"
	var inputs, foreign string
	e := newKindsEnv(t, func(store *storage.Clients) map[string]string {
		inputs, foreign = store.Layout.Name("inputs"), store.Layout.Name("other-app")
		return map[string]string{SettingCSVContainers: " " + inputs + " , "}
	})
	upload(t, e.store, foreign, ".env", secret+"\nAPI_KEY=abc\n")
	upload(t, e.store, inputs, "daily.csv", "n\n1\n2\n")

	for id, args := range map[string]string{
		"csv-foreign":     `{"container":"` + foreign + `","blob":".env"}`,
		"csv-status":      `{"container":"` + e.store.Layout.StatusContainer() + `","blob":"csv-ok.json"}`,
		"csv-host":        `{"container":"azure-webjobs-secrets","blob":"host.json"}`,
		"csv-dotdot":      `{"container":"` + inputs + `","blob":"../` + foreign + `/.env"}`,
		"csv-dot-segment": `{"container":"` + inputs + `","blob":"./daily.csv"}`,
		"csv-long-name":   `{"container":"` + inputs + `","blob":"` + strings.Repeat("a", MaxCSVBlobName+1) + `"}`,
	} {
		st := e.run(t, id, "csv_stats", args, 0)
		if st.State != record.StateDead || st.Attempt != 1 {
			t.Errorf("%s: state %s after %d attempts, want dead after 1 (permanent): %s", id, st.State, st.Attempt, st.LastError)
		}
		if strings.HasPrefix(id, "csv-dot") || id == "csv-long-name" {
			if !strings.Contains(st.LastError, "args.blob") {
				t.Errorf("%s: last_error %q does not name args.blob", id, st.LastError)
			}
		} else if !strings.Contains(st.LastError, SettingCSVContainers) || strings.Contains(st.LastError, inputs) {
			t.Errorf("%s: last_error %q must name %s and not list the allowed containers", id, st.LastError, SettingCSVContainers)
		}
		if all := e.everything(t, st); strings.Contains(all, "hunter2") || strings.Contains(all, "API_KEY") {
			t.Errorf("%s: the foreign blob's content leaked:\n%s", id, all)
		}
	}
	// The listed container still works.
	st := e.run(t, "csv-ok", "csv_stats", `{"container":"`+inputs+`","blob":"daily.csv"}`, 0)
	if st.State != record.StateSucceeded || !strings.Contains(string(st.Result.JSON), `"sum":3`) {
		t.Fatalf("listed container: %+v", st)
	}
}

// A worker whose list somehow holds a reserved container (not through the setting, which
// refuses it at start-up) still refuses it at run time.
func TestCSVStatsRefusesReservedContainersAtRunTime(t *testing.T) {
	store := testenv.Clients(t)
	status := store.Layout.StatusContainer()
	w := &csvStatsWorker{store: store, containers: map[string]bool{status: true, "azure-webjobs-hosts": true}}
	for _, c := range []string{status, "azure-webjobs-hosts"} {
		_, err := w.Work(context.Background(), job(CSVStatsArgs{Container: c, Blob: "x.json"}))
		if !nightshift.IsPermanent(err) || !strings.Contains(err.Error(), SettingCSVContainers) {
			t.Errorf("%s: %v", c, err)
		}
	}
}

// Listing nightshift's own, the host's, a deployment or a system container, or a name
// that is no container name, stops the handler at start-up with an error naming the
// setting.
func TestCSVContainersSettingRefusesReservedAndBadNames(t *testing.T) {
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	hostEnv := testenv.Env(t, "FUNCTIONS_CUSTOMHANDLER_PORT", "1")
	store, err := storage.FromEnv(hostEnv, nil)
	if err != nil {
		t.Fatal(err)
	}
	for value, want := range map[string]string{
		store.Layout.StatusContainer():                     "nightshift's own",
		"ok-container," + store.Layout.PayloadsContainer(): "nightshift's own",
		"nightshift-deadletters":                           "nightshift's own",
		"other-nightshift-results":                         "nightshift's own",
		"azure-webjobs-hosts":                              "Functions host",
		"azure-webjobs-secrets":                            "Functions host",
		"app-package-func-abc123-abc1234":                  "deployment package",
		"deploymentpackage":                                "deployment package",
		"$logs":                                            "storage system",
		"$web":                                             "storage system",
		"insights-logs-storageread":                        "diagnostics",
		"Uploads":                                          "not a container name",
		"ab":                                               "not a container name",
		"a--b":                                             "not a container name",
		"in/put":                                           "not a container name",
	} {
		env := func(k string) string {
			if k == SettingCSVContainers {
				return value
			}
			return hostEnv(k)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // a handler that started anyway returns at once instead of serving
		err := run(ctx, env, log)
		var se *storage.SettingError
		if !errors.As(err, &se) || se.Setting != SettingCSVContainers || !strings.Contains(err.Error(), want) {
			t.Errorf("%s=%q: got %v, want a setting error with %q", SettingCSVContainers, value, err, want)
		}
	}
	if got, err := parseCSVContainers("uploads, exports,,", store.Layout); err != nil || len(got) != 2 || !got["uploads"] || !got["exports"] {
		t.Fatalf("valid list: %v %v", got, err)
	}
	if got, err := parseCSVContainers("", store.Layout); err != nil || len(got) != 0 {
		t.Fatalf("empty list: %v %v", got, err)
	}
}

func TestCappedReader(t *testing.T) {
	read := func(content string, n int64) (string, error) {
		b, err := io.ReadAll(&capped{r: strings.NewReader(content), n: n})
		return string(b), err
	}
	if got, err := read("abcdef", 6); got != "abcdef" || err != nil {
		t.Fatalf("at the cap: %q %v", got, err)
	}
	if _, err := read("abcdefg", 6); !errors.Is(err, errCSVTooLarge) {
		t.Fatalf("over the cap: %v", err)
	}
}

// Issue 10 finding 5 (http_fetch): a remote error body went into last_error up to 200
// bytes. Now at most MaxErrorBodyBytes printable ASCII characters of it do, for retried
// (5xx) and permanent (4xx) answers alike, in the status, its error history, the dead
// letter and the log.
func TestHTTPFetchCutsRemoteBodyInErrors(t *testing.T) {
	head := strings.Repeat("x", MaxErrorBodyBytes)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/500":
			w.WriteHeader(500)
			_, _ = io.WriteString(w, head+"SECRET-TAIL "+strings.Repeat("y", 4000))
		case "/422":
			w.WriteHeader(422)
			_, _ = io.WriteString(w, "bad\ninput\x00\u00e9"+head+"SECRET-TAIL")
		}
	}))
	defer srv.Close()
	e := newKindsEnv(t, func(*storage.Clients) map[string]string {
		return map[string]string{SettingFetchAllowPrivate: "true"} // the test server is on loopback
	})
	for id, c := range map[string]struct{ path, want string }{
		"fetch-500": {"/500", "500 Internal Server Error (will retry): " + head + "..."},
		"fetch-422": {"/422", "422 Unprocessable Entity: bad?input??" + head[:MaxErrorBodyBytes-len("bad?input??")] + "..."},
	} {
		st := e.run(t, id, "http_fetch", `{"url":"`+srv.URL+c.path+`"}`, 1)
		if st.State != record.StateDead || !strings.Contains(st.LastError, c.want) {
			t.Errorf("%s: state %s, last_error %q, want it to contain %q", id, st.State, st.LastError, c.want)
		}
		if all := e.everything(t, st); strings.Contains(all, "SECRET-TAIL") || strings.Contains(all, "yyyy") {
			t.Errorf("%s: more than %d bytes of the remote body were kept:\n%s", id, MaxErrorBodyBytes, all)
		}
	}
}

func TestSnippet(t *testing.T) {
	for in, want := range map[string]string{
		"":                      "",
		"  \n ":                 "",
		"short":                 ": short",
		"tab\there\r\n":         ": tab?here",
		"\u2603 snow":           ": ? snow",
		strings.Repeat("z", 64): ": " + strings.Repeat("z", 64),
		strings.Repeat("z", 65): ": " + strings.Repeat("z", 64) + "...",
	} {
		if got := snippet([]byte(in)); got != want {
			t.Errorf("snippet(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestHTTPFetchTimeoutBounded: a huge timeout_seconds is a permanent error naming the
// bound, not an overflowed duration.
func TestHTTPFetchTimeoutBounded(t *testing.T) {
	e := newKindsEnv(t, func(*storage.Clients) map[string]string { return nil })
	for id, v := range map[string]string{"fetch-1e300": "1e300", "fetch-hour-and-a-bit": "3601"} {
		st := e.run(t, id, "http_fetch", `{"url":"https://example.invalid/","timeout_seconds":`+v+`}`, 1)
		if st.State != record.StateDead || !strings.Contains(st.LastError, "args.timeout_seconds") || !strings.Contains(st.LastError, "3600") {
			t.Errorf("%s: %s %q", id, st.State, st.LastError)
		}
	}
}
