package ui_test

import (
	"bytes"
	"context"
	"encoding/json"
	"html/template"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/internal/funchost"
	"github.com/nightshift-jobs/nightshift/internal/testenv"
	"github.com/nightshift-jobs/nightshift/storage"
	"github.com/nightshift-jobs/nightshift/ui"
)

// functionKey is the key the tests' host checks; no page may show another.
const functionKey = "fn-key/with+odd=chars=="

// mountedApp is an app with the dashboard mounted as its Dashboard function.
func mountedApp(t *testing.T, store *storage.Clients) *nightshift.App {
	t.Helper()
	reg := nightshift.NewRegistry()
	nightshift.AddWorkerFunc(reg, func(ctx context.Context, j *nightshift.Job[echoArgs]) (any, error) {
		return map[string]string{"echo": j.Args.Msg}, nil
	}, nil)
	app, err := nightshift.NewApp(reg, nightshift.Config{Store: store, Getenv: func(string) string { return "" },
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
		Features: []nightshift.Feature{ui.Feature(nil)}})
	if err != nil {
		t.Fatal(err)
	}
	return app
}

// hostAnswer is Outputs.res of a JSON-wrapped HTTP invocation.
type hostAnswer struct {
	Status  int
	Headers map[string]string
	Body    string
	Logs    []string
}

// invokeWrapped sends the request the host would send for method and rawURL (a URL of
// the public app, query included) and returns the function's answer.
func invokeWrapped(t *testing.T, h http.Handler, method, rawURL string, headers map[string][]string, body string) hostAnswer {
	t.Helper()
	u, _ := url.Parse(rawURL)
	query := map[string]string{}
	for k, v := range u.Query() {
		query[k] = strings.Join(v, ",")
	}
	req := map[string]any{"Url": rawURL, "Method": method, "Query": query, "Headers": headers,
		"Params": map[string]string{"path": strings.TrimPrefix(u.Path, "/api/ui/")}, "Identities": []any{}, "Body": body}
	inv, _ := json.Marshal(map[string]any{"Data": map[string]any{"req": req}, "Metadata": map[string]any{}})
	hr := httptest.NewRequest(http.MethodPost, "/"+ui.FunctionName, bytes.NewReader(inv))
	hr.Header.Set("Content-Type", "application/json; charset=utf-8")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, hr)
	if rec.Code != http.StatusOK {
		t.Fatalf("invocation %s %s = %d %s", method, rawURL, rec.Code, rec.Body)
	}
	var out struct {
		Outputs struct {
			Res struct {
				StatusCode string            `json:"statusCode"`
				Headers    map[string]string `json:"headers"`
				Body       string            `json:"body"`
			} `json:"res"`
		}
		Logs []string
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatalf("invocation answer %s: %v", rec.Body, err)
	}
	a := hostAnswer{Headers: out.Outputs.Res.Headers, Body: out.Outputs.Res.Body, Logs: out.Logs}
	if _, err := json.Number(out.Outputs.Res.StatusCode).Int64(); err != nil {
		t.Fatalf("statusCode %q", out.Outputs.Res.StatusCode)
	}
	n, _ := json.Number(out.Outputs.Res.StatusCode).Int64()
	a.Status = int(n)
	return a
}

var ownURL = regexp.MustCompile(`(?:href|src|action)="(/api/ui[^"]*)"`)

// checkCarried fails unless every URL of the page into the dashboard carries the key,
// every GET form has it as a hidden field, and no other key shows.
func checkCarried(t *testing.T, what, page string) {
	t.Helper()
	esc := strings.ReplaceAll(url.QueryEscape(functionKey), "+", "%2B")
	urls := ownURL.FindAllStringSubmatch(page, -1)
	if len(urls) < 5 {
		t.Fatalf("%s: only %d links into the dashboard: %s", what, len(urls), page)
	}
	for _, m := range urls {
		if !strings.Contains(m[1], "code="+esc) {
			t.Errorf("%s: %s does not carry the key", what, m[1])
		}
		if strings.Count(m[1], "code=") != 1 {
			t.Errorf("%s: %s carries the key more than once", what, m[1])
		}
	}
	forms := regexp.MustCompile(`<form method="get"[^>]*>(<input[^>]*>)`).FindAllStringSubmatch(page, -1)
	for _, f := range forms {
		if f[1] != `<input type="hidden" name="code" value="`+template.HTMLEscapeString(functionKey)+`">` {
			t.Errorf("%s: GET form starts with %s, not the key", what, f[1])
		}
	}
	if strings.Contains(page, accountKey) || strings.Contains(page, "logout") || strings.Contains(page, `name="token"`) {
		t.Errorf("%s shows a key, a logout or a login: %s", what, page)
	}
}

// The Dashboard function, invoked as the host invokes it (JSON-wrapped, §1.7): the key
// comes in ?code=, every link, asset, form and redirect carries it on, the page is sent
// with Referrer-Policy no-referrer and sets no cookie, a request without the key is
// refused, POSTs still need the CSRF token, and the key is never in the invocation's logs.
func TestFunctionMounted(t *testing.T) {
	store := testenv.Memory(t)
	app := mountedApp(t, store)
	if _, err := app.Client().Enqueue(context.Background(), echoArgs{Msg: "x"}, &nightshift.EnqueueOptions{JobID: "queued-1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := app.Client().StartWorkflow(context.Background(), chain("wf-1")); err != nil {
		t.Fatal(err)
	}
	base := "https://func-x.azurewebsites.net/api/ui"
	code := "code=" + url.QueryEscape(functionKey)
	h := app.Handler()

	if a := invokeWrapped(t, h, "GET", base+"/", nil, ""); a.Status != http.StatusUnauthorized {
		t.Fatalf("without the key: %d %s", a.Status, a.Body)
	}
	for _, p := range []string{"/", "/jobs", "/jobs/queued-1", "/dead", "/batches", "/workflows", "/workflows/wf-1", "/schedules"} {
		a := invokeWrapped(t, h, "GET", base+p+"?"+code, nil, "")
		if a.Status != http.StatusOK || !strings.HasPrefix(a.Headers["Content-Type"], "text/html") {
			t.Fatalf("GET %s: %d %v %s", p, a.Status, a.Headers, a.Body)
		}
		if a.Headers["Referrer-Policy"] != "no-referrer" || !strings.Contains(a.Body, `<meta name="referrer" content="no-referrer">`) {
			t.Errorf("GET %s: Referrer-Policy %q", p, a.Headers["Referrer-Policy"])
		}
		if a.Headers["Set-Cookie"] != "" {
			t.Errorf("GET %s sets a cookie: %s", p, a.Headers["Set-Cookie"])
		}
		checkCarried(t, p, a.Body)
		for _, l := range a.Logs {
			if strings.Contains(l, functionKey) || strings.Contains(l, url.QueryEscape(functionKey)) || strings.Contains(l, "code=") {
				t.Errorf("the invocation log shows the key: %q", l)
			}
		}
	}
	// The embedded assets come through the function too.
	if a := invokeWrapped(t, h, "GET", base+"/static/style.css?"+code, nil, ""); a.Status != http.StatusOK || !strings.Contains(a.Headers["Content-Type"], "text/css") {
		t.Fatalf("style.css: %d %v", a.Status, a.Headers)
	}
	// A redirect keeps the key: /api/ui → /api/ui/, and the login page (none when mounted).
	for _, p := range []string{"", "/login"} {
		if a := invokeWrapped(t, h, "GET", base+p+"?"+code, nil, ""); a.Status/100 != 3 || a.Headers["Location"] != "/api/ui/?"+code {
			t.Errorf("GET %q: %d Location %q", p, a.Status, a.Headers["Location"])
		}
	}
	// The workflow lookup redirects with the key.
	if a := invokeWrapped(t, h, "GET", base+"/workflows?id=wf-1&"+code, nil, ""); a.Status != http.StatusSeeOther || a.Headers["Location"] != "/api/ui/workflows/wf-1?"+code {
		t.Errorf("workflow lookup: %d Location %q", a.Status, a.Headers["Location"])
	}
	// A paged or filtered URL keeps its own query next to the key.
	if a := invokeWrapped(t, h, "GET", base+"/jobs?state=queued&"+code, nil, ""); a.Status != http.StatusOK || !strings.Contains(a.Body, "queued-1") {
		t.Fatalf("jobs?state=queued: %d %s", a.Status, a.Body)
	}

	// Cancel: refused without the CSRF token, done with it; the redirect carries the key.
	page := invokeWrapped(t, h, "GET", base+"/jobs/queued-1?"+code, nil, "").Body
	m := csrfField.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no CSRF token on the job page: %s", page)
	}
	form := map[string][]string{"Content-Type": {"application/x-www-form-urlencoded"}, "Origin": {"null"}}
	if a := invokeWrapped(t, h, "POST", base+"/jobs/queued-1/cancel?"+code, form, "csrf=wrong"); a.Status != http.StatusForbidden {
		t.Fatalf("cancel with a wrong CSRF token: %d %s", a.Status, a.Body)
	}
	other := map[string][]string{"Content-Type": {"application/x-www-form-urlencoded"}, "Origin": {"https://evil.example"}}
	if a := invokeWrapped(t, h, "POST", base+"/jobs/queued-1/cancel?"+code, other, "csrf="+url.QueryEscape(m[1])); a.Status != http.StatusForbidden {
		t.Fatalf("cancel from another origin: %d %s", a.Status, a.Body)
	}
	a := invokeWrapped(t, h, "POST", base+"/jobs/queued-1/cancel?"+code, form, "csrf="+url.QueryEscape(m[1]))
	if a.Status != http.StatusSeeOther || a.Headers["Location"] != "/api/ui/jobs/queued-1?done=cancelled&"+code {
		t.Fatalf("cancel: %d Location %q %s", a.Status, a.Headers["Location"], a.Body)
	}
	if st, err := app.Client().Status(context.Background(), "queued-1"); err != nil || st.State != "cancelled" {
		t.Fatalf("after cancel: %+v %v", st, err)
	}
	// The CSRF token is the key's: another key's pages carry another.
	one := csrfField.FindStringSubmatch(invokeWrapped(t, h, "GET", base+"/dead?"+code, nil, "").Body)
	two := csrfField.FindStringSubmatch(invokeWrapped(t, h, "GET", base+"/dead?code=another-key", nil, "").Body)
	if one == nil || two == nil || one[1] != m[1] || two[1] == m[1] {
		t.Fatalf("the CSRF token does not depend on the key: %v %v", one, two)
	}
}

// Through the local host (which checks function keys like the real one): a request
// without the key, or with a wrong one, is refused by the host; with ?code= the pages
// open and link on with the key, and a GET form sent as a browser sends it works.
func TestFunctionThroughLocalHost(t *testing.T) {
	store := testenv.Clients(t)
	app := mountedApp(t, store)
	if _, err := app.Client().Enqueue(context.Background(), echoArgs{Msg: "x"}, &nightshift.EnqueueOptions{JobID: "queued-1"}); err != nil {
		t.Fatal(err)
	}
	base, stop := localHost(t, app, store)
	defer stop()

	get := func(u string) (int, string) {
		t.Helper()
		c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		var resp *http.Response
		var err error
		for try := 0; try < 100; try++ { // the listener opens once the host runs
			if resp, err = c.Get(u); err == nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get(base + "/"); code != http.StatusUnauthorized {
		t.Fatalf("without the key: %d %s", code, body)
	}
	if code, body := get(base + "/?code=wrong"); code != http.StatusUnauthorized {
		t.Fatalf("with a wrong key: %d %s", code, body)
	}
	code, body := get(base + "/?code=" + url.QueryEscape(functionKey))
	if code != http.StatusOK || !strings.Contains(body, "Overview") {
		t.Fatalf("with the key: %d %s", code, body)
	}
	checkCarried(t, "overview", body)
	// Follow the jobs link as a browser would, then submit the filter form (GET: the
	// fields replace the action's query; the hidden key field keeps the key).
	link := regexp.MustCompile(`href="(/api/ui/jobs\?[^"]*)"`).FindStringSubmatch(body)
	if link == nil {
		t.Fatalf("no jobs link: %s", body)
	}
	root := strings.TrimSuffix(base, "/api/ui")
	code, body = get(root + strings.ReplaceAll(link[1], "&amp;", "&"))
	if code != http.StatusOK || !strings.Contains(body, "queued-1") {
		t.Fatalf("jobs page: %d %s", code, body)
	}
	q := url.Values{"code": {functionKey}, "state": {"queued"}, "kind": {""}}
	if code, body = get(base + "/jobs?" + q.Encode()); code != http.StatusOK || !strings.Contains(body, "queued-1") {
		t.Fatalf("filter form: %d %s", code, body)
	}
	if code, _ := get(base + "/static/app.js?code=" + url.QueryEscape(functionKey)); code != http.StatusOK {
		t.Fatalf("app.js: %d", code)
	}
}

// localHost runs the local Functions host in this process on the app's functions
// (function.json as generated) with functionKey, and returns the dashboard's base URL.
func localHost(t *testing.T, app *nightshift.App, store *storage.Clients) (string, func()) {
	t.Helper()
	files, err := app.FunctionFiles()
	if err != nil {
		t.Fatal(err)
	}
	fsys := fstest.MapFS{"host.json": {Data: []byte(`{"version": "2.0"}`)}}
	fsys[ui.FunctionName+"/function.json"] = &fstest.MapFile{Data: files[ui.FunctionName+"/function.json"]}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	settings := map[string]string{storage.SettingStorage: testenv.ConnectionString(t), storage.SettingNamePrefix: store.Layout.Prefix(),
		funchost.SettingFunctionKey: functionKey}
	logs := &testenv.LogBuffer{}
	host, err := funchost.NewFS(fsys, "app", funchost.Options{Settings: settings, Getenv: func(string) string { return "" },
		HTTPAddr: addr, Handler: app.Handler(), Logger: slog.New(slog.NewTextHandler(logs, nil)), DrainTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- host.Run(ctx) }()
	testenv.WaitFor(t, 30*time.Second, "the local host's HTTP listener", func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return "http://" + addr + "/api/ui", func() {
		cancel()
		select {
		case err := <-done:
			if err != nil && ctx.Err() == nil {
				t.Error(err)
			}
		case <-time.After(30 * time.Second):
			t.Error("the local host did not stop")
		}
		if t.Failed() {
			t.Logf("host log:\n%s", logs.String())
		}
	}
}
