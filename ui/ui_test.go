package ui_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/internal/testenv"
	"github.com/nightshift-jobs/nightshift/schedule"
	"github.com/nightshift-jobs/nightshift/storage"
	"github.com/nightshift-jobs/nightshift/ui"
)

// accountKey is Azurite's well-known account key: the connection string of every test
// holds it, and no page may show it.
const accountKey = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

const connString = "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=" + accountKey + ";BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;"

type echoArgs struct {
	Msg string `json:"msg"`
}

func (echoArgs) Kind() string { return "test.echo" }

type failArgs struct {
	Card     string            `json:"card" nightshift:"sensitive"`
	Password string            `json:"password"`
	Note     string            `json:"note"`
	PIN      nightshift.Secret `json:"pin"`
}

func (failArgs) Kind() string { return "test.fail" }

// slowArgs' job reports progress and runs until it is cancelled.
type slowArgs struct{}

func (slowArgs) Kind() string { return "test.slow" }

// env is a dashboard on an app whose jobs run through the real handler.
type env struct {
	t     *testing.T
	store *storage.Clients
	c     *nightshift.Client
	app   http.Handler
	srv   *httptest.Server
	http  *http.Client
	token string
}

func newEnv(t *testing.T, store *storage.Clients, opts ui.Options) *env {
	t.Helper()
	reg := nightshift.NewRegistry()
	nightshift.AddWorkerFunc(reg, func(ctx context.Context, j *nightshift.Job[echoArgs]) (any, error) {
		j.Logger.Info("echo", "msg", j.Args.Msg)
		j.Logger.Info("connected with " + connString)
		return map[string]string{"echo": j.Args.Msg}, nil
	}, nil)
	nightshift.AddWorkerFunc(reg, func(ctx context.Context, j *nightshift.Job[failArgs]) (any, error) {
		if j.Replay > 0 {
			return "fixed", nil
		}
		return nil, nightshift.Permanentf("card declined; storage said AccountKey=%s", accountKey)
	}, nil)
	nightshift.AddWorkerFunc(reg, func(ctx context.Context, j *nightshift.Job[slowArgs]) (any, error) {
		j.Progress(ctx, 0.4, "4 of 10 steps")
		<-ctx.Done()
		return nil, ctx.Err()
	}, nil)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	app, err := nightshift.NewApp(reg, nightshift.Config{Store: store, Getenv: func(string) string { return "" }, Logger: log,
		Handler: nightshift.HandlerOptions{RunningAfter: time.Millisecond, CancelCheck: 50 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	if opts.Token == "" {
		opts.Token = ui.NewToken()
	}
	opts.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelError}))
	opts.Kinds = reg.Kinds
	e := &env{t: t, store: store, c: app.Client(), app: app.Handler(), token: opts.Token}
	e.srv = httptest.NewServer(ui.Handler(e.c, opts))
	t.Cleanup(e.srv.Close)
	jar, _ := cookiejar.New(nil)
	e.http = &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return nil }}
	return e
}

// drain runs every queued job (and the dead-letter function) to its end.
func (e *env) drain() {
	e.t.Helper()
	testenv.Drain(e.t, e.store, e.app, e.store.Layout.JobsQueue(), nightshift.FunctionRunJob, nightshift.FunctionRunDeadLetter)
}

// startOne delivers the next message of the jobs queue to the handler in the background
// (as the host does) and returns a channel that gets the invocation's HTTP status when it
// ends.
func (e *env) startOne() <-chan int {
	e.t.Helper()
	msgs, err := e.store.Store().Receive(context.Background(), e.store.Layout.JobsQueue(), 1, time.Minute)
	if err != nil || len(msgs) != 1 {
		e.t.Fatalf("receive: %v %d", err, len(msgs))
	}
	done := make(chan int, 1)
	go func() {
		req := httptest.NewRequest(http.MethodPost, "/"+nightshift.FunctionRunJob, bytes.NewReader(testenv.QueueInvocation(nightshift.FunctionRunJob, msgs[0])))
		req.Header.Set("Content-Type", "application/json; charset=utf-8")
		rec := httptest.NewRecorder()
		e.app.ServeHTTP(rec, req)
		_ = e.store.Store().DeleteMessage(context.Background(), e.store.Layout.JobsQueue(), msgs[0].ID, msgs[0].PopReceipt)
		done <- rec.Code
	}()
	return done
}

func (e *env) enqueue(args nightshift.JobArgs, id string) {
	e.t.Helper()
	if _, err := e.c.Enqueue(context.Background(), args, &nightshift.EnqueueOptions{JobID: id}); err != nil {
		e.t.Fatal(err)
	}
}

// get fetches a dashboard path and returns the status and body.
func (e *env) get(path string) (int, string) {
	e.t.Helper()
	resp, err := e.http.Get(e.srv.URL + path)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (e *env) post(path string, form url.Values) (int, string) {
	e.t.Helper()
	resp, err := e.http.PostForm(e.srv.URL+path, form)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (e *env) login() {
	e.t.Helper()
	if code, body := e.post("/login", url.Values{"token": {e.token}}); code != http.StatusOK || !strings.Contains(body, "Overview") {
		e.t.Fatalf("login: %d %s", code, body)
	}
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf returns the CSRF token a page carries.
func (e *env) csrf(body string) string {
	e.t.Helper()
	m := csrfField.FindStringSubmatch(body)
	if m == nil {
		e.t.Fatalf("no CSRF token in the page")
	}
	return m[1]
}

// seed runs three echo jobs and one failing job (dead), and leaves one queued.
func (e *env) seed() {
	e.t.Helper()
	for _, id := range []string{"echo-1", "echo-2", "echo-3"} {
		e.enqueue(echoArgs{Msg: "hello " + id}, id)
	}
	e.enqueue(failArgs{Card: "4111-1111", Password: "hunter2", Note: "visible note", PIN: "9876"}, "fail-1")
	e.drain()
	e.enqueue(echoArgs{Msg: "later"}, "queued-1")
}

func TestPages(t *testing.T) {
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			e := newEnv(t, b.Clients(t), ui.Options{Recurring: schedule.Builtin()})
			e.seed()
			e.login()

			code, body := e.get("/")
			if code != http.StatusOK || !strings.Contains(body, "<svg") || !strings.Contains(body, e.store.Layout.JobsQueue()+"-poison") {
				t.Fatalf("overview: %d %s", code, body)
			}
			if !regexp.MustCompile(`succeeded 3\b`).MatchString(body) || !regexp.MustCompile(`dead 1\b`).MatchString(body) || !strings.Contains(body, "test.echo") {
				t.Fatalf("overview counts: %s", body)
			}

			_, body = e.get("/jobs?state=succeeded")
			if strings.Count(body, `class="job"`) != 3 || strings.Contains(body, "fail-1") {
				t.Fatalf("jobs ?state=succeeded: %s", body)
			}
			_, body = e.get("/jobs?kind=test.fail")
			if strings.Count(body, `class="job"`) != 1 || !strings.Contains(body, "fail-1") {
				t.Fatalf("jobs ?kind=test.fail: %s", body)
			}
			_, body = e.get("/jobs?state=queued&queue=" + e.store.Layout.JobsQueue())
			if strings.Count(body, `class="job"`) != 1 || !strings.Contains(body, "queued-1") {
				t.Fatalf("jobs ?state=queued: %s", body)
			}
			_, body = e.get("/jobs?since=" + url.QueryEscape(time.Now().Add(time.Hour).UTC().Format(time.RFC3339)))
			if strings.Contains(body, `class="job"`) {
				t.Fatalf("jobs since an hour from now: %s", body)
			}
			if code, body = e.get("/jobs?state=bogus"); code != http.StatusBadRequest || !strings.Contains(body, "bogus") {
				t.Fatalf("bad state: %d %s", code, body)
			}
			if code, _ = e.get("/jobs?since=yesterday-ish"); code != http.StatusBadRequest {
				t.Fatalf("bad since: %d", code)
			}
			if code, _ = e.get("/jobs?state=succeeded&cursor=nonsense"); code != http.StatusBadRequest {
				t.Fatalf("bad cursor: %d", code)
			}

			_, body = e.get("/jobs/echo-2")
			for _, want := range []string{"succeeded", "hello echo-2", `id="download"`, `id="args"`, `&#34;echo&#34;: &#34;hello echo-2&#34;`} {
				if !strings.Contains(body, want) {
					t.Fatalf("job detail lacks %q: %s", want, body)
				}
			}
			resp, err := e.http.Get(e.srv.URL + "/jobs/echo-2/result")
			if err != nil {
				t.Fatal(err)
			}
			res, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if !strings.Contains(resp.Header.Get("Content-Disposition"), "attachment") || !strings.Contains(string(res), "hello echo-2") {
				t.Fatalf("download: %v %s", resp.Header, res)
			}

			_, body = e.get("/jobs/fail-1")
			if !strings.Contains(body, "visible note") || strings.Contains(body, "4111-1111") || strings.Contains(body, "hunter2") || strings.Contains(body, "9876") {
				t.Fatalf("dead job detail shows sensitive args (or not the others): %s", body)
			}
			_, body = e.get("/dead?reason=permanent_error&kind=test.fail")
			if !strings.Contains(body, "/dead/fail-1") {
				t.Fatalf("dead letters: %s", body)
			}
			_, body = e.get("/dead?reason=attempts_exhausted")
			if strings.Contains(body, "/dead/fail-1") {
				t.Fatalf("dead letters filtered by another reason: %s", body)
			}
			_, body = e.get("/dead?cause=crash")
			if strings.Contains(body, "/dead/fail-1") {
				t.Fatalf("dead letters filtered by cause crash: %s", body)
			}
			_, body = e.get("/dead/fail-1")
			if !strings.Contains(body, "card declined") || strings.Contains(body, "4111-1111") || strings.Contains(body, "hunter2") {
				t.Fatalf("dead letter: %s", body)
			}
			_, body = e.get("/schedules")
			if !strings.Contains(body, "Maintenance") && !strings.Contains(body, "maintenance") {
				t.Fatalf("schedules: %s", body)
			}
			if code, body = e.get("/batches"); code != http.StatusOK || !strings.Contains(body, "No batches") {
				t.Fatalf("batches: %d %s", code, body)
			}
			if _, body = e.get("/jobs/queued-1"); !strings.Contains(body, `http-equiv="refresh"`) {
				t.Fatalf("a queued job's page does not reload itself: %s", body)
			}
			if _, body = e.get("/jobs/echo-1"); strings.Contains(body, `http-equiv="refresh"`) {
				t.Fatalf("an ended job's page reloads itself: %s", body)
			}
			if _, err := e.c.StartBatch(context.Background(), nightshift.BatchParams{BatchID: "b-1",
				Children:  []nightshift.EnqueueParams{{Args: echoArgs{Msg: "c0"}}, {Args: echoArgs{Msg: "c1"}}},
				Finalizer: &nightshift.EnqueueParams{Args: echoArgs{Msg: "fin"}}}); err != nil {
				t.Fatal(err)
			}
			e.drain()
			_, body = e.get("/batches")
			if !strings.Contains(body, "/batches/b-1") || !strings.Contains(body, "/jobs/b-1-finalizer") || !strings.Contains(body, `<td class="n">2</td>`) {
				t.Fatalf("batches with b-1: %s", body)
			}
			if _, body = e.get("/batches/b-1"); !strings.Contains(body, "batch=b-1") {
				t.Fatalf("batch b-1: %s", body)
			}
			if _, body = e.get("/jobs?since=all&batch=b-1"); strings.Count(body, `class="job"`) != 3 {
				t.Fatalf("the jobs of batch b-1: %s", body)
			}
			if _, body = e.get("/jobs/b-1-0"); !strings.Contains(body, `href="/batches/b-1"`) {
				t.Fatalf("a child's page does not name its batch: %s", body)
			}
			if code, _ = e.get("/jobs/no-such-job"); code != http.StatusNotFound {
				t.Fatalf("missing job: %d", code)
			}
		})
	}
}

// TestNoSecretsShown renders every page of a dashboard on storage opened with a
// connection string holding an AccountKey, with jobs whose logs and errors hold it too,
// and checks that the key shows nowhere.
func TestNoSecretsShown(t *testing.T) {
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			store := b.Clients(t)
			e := newEnv(t, store, ui.Options{Recurring: schedule.Builtin(), Secrets: []string{accountKey}})
			e.seed()
			if _, err := e.c.Enqueue(context.Background(), echoArgs{Msg: "key " + accountKey}, &nightshift.EnqueueOptions{JobID: "leaky"}); err != nil {
				t.Fatal(err)
			}
			e.drain()
			e.login()
			pages := []string{"/", "/jobs", "/jobs?since=all", "/jobs/echo-1", "/jobs/echo-1/result", "/jobs/fail-1", "/jobs/leaky", "/jobs/queued-1",
				"/dead", "/dead/fail-1", "/batches", "/workflows", "/schedules", "/flow", "/login", "/jobs?state=bogus"}
			for _, p := range pages {
				code, body := e.get(p)
				if code >= 500 {
					t.Fatalf("%s: %d %s", p, code, body)
				}
				if p == "/jobs/echo-1/result" {
					continue // the job's own result, downloaded on purpose
				}
				if strings.Contains(body, accountKey) || strings.Contains(body, accountKey[:20]) {
					t.Fatalf("%s shows the account key: %s", p, body)
				}
				if strings.Contains(body, "connected with") && !strings.Contains(body, "AccountKey="+nightshift.Redacted) {
					t.Fatalf("%s: the connection string is not scrubbed: %s", p, body)
				}
			}
		})
	}
}

func TestTokenRequired(t *testing.T) {
	e := newEnv(t, testenv.Memory(t), ui.Options{})
	e.http.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	for _, p := range []string{"/", "/jobs", "/jobs/x", "/dead", "/batches", "/schedules"} {
		code, _ := e.get(p)
		if code != http.StatusSeeOther {
			t.Fatalf("%s without a session: %d, want a redirect to the login", p, code)
		}
	}
	if code, _ := e.post("/jobs/x/cancel", url.Values{}); code != http.StatusUnauthorized {
		t.Fatalf("POST without a session: %d", code)
	}
	if code, body := e.post("/login", url.Values{"token": {e.token + "x"}}); code != http.StatusUnauthorized || !strings.Contains(body, "login-failed") {
		t.Fatalf("wrong token: %d", code)
	}
	if code, _ := e.get("/login?token=wrong"); code != http.StatusUnauthorized {
		t.Fatalf("wrong token in the URL: %d", code)
	}
	if code, _ := e.get("/"); code != http.StatusSeeOther {
		t.Fatalf("after a wrong token: %d", code)
	}
	// The token in the URL sets the cookie: HttpOnly, SameSite=Strict.
	resp, err := e.http.Get(e.srv.URL + "/login?token=" + url.QueryEscape(e.token))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	ck := resp.Header.Get("Set-Cookie")
	if resp.StatusCode != http.StatusSeeOther || !strings.Contains(ck, "HttpOnly") || !strings.Contains(ck, "SameSite=Strict") {
		t.Fatalf("login: %d %q", resp.StatusCode, ck)
	}
	resp, err = e.http.Get(e.srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	h := resp.Header
	if resp.StatusCode != http.StatusOK || !strings.Contains(h.Get("Content-Security-Policy"), "default-src 'self'") ||
		h.Get("X-Frame-Options") != "DENY" || h.Get("Cache-Control") != "no-store" {
		t.Fatalf("overview after login: %d %v", resp.StatusCode, h)
	}
	// A forged cookie does not open it.
	forged := &http.Client{}
	req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/jobs", nil)
	req.AddCookie(&http.Cookie{Name: ui.CookieName, Value: "a.9999999999.b"})
	forged.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err = forged.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("forged cookie: %d", resp.StatusCode)
	}
}

func TestNoTokenConfigured(t *testing.T) {
	c := nightshift.NewClient(testenv.Memory(t), nil)
	srv := httptest.NewServer(ui.Handler(c, ui.Options{}))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/login?token=")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("no token configured: %d", resp.StatusCode)
	}
}

func TestPrefix(t *testing.T) {
	e := newEnv(t, testenv.Memory(t), ui.Options{Prefix: "/ui/"})
	if code, body := e.post("/ui/login", url.Values{"token": {e.token}}); code != http.StatusOK || !strings.Contains(body, `href="/ui/jobs"`) {
		t.Fatalf("login under /ui: %d %s", code, body)
	}
	if code, _ := e.get("/other"); code != http.StatusNotFound {
		t.Fatalf("outside the prefix: %d", code)
	}
}

// testWriter sends the dashboard's error log to the test's log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}
