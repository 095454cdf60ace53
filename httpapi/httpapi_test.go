package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/hostproto"
	"github.com/nightshift-jobs/nightshift/httpapi"
	"github.com/nightshift-jobs/nightshift/internal/testenv"
	"github.com/nightshift-jobs/nightshift/storage"
)

type echoArgs struct {
	Text   string `json:"text"`
	Repeat int    `json:"repeat"`
}

func (echoArgs) Kind() string { return "test.echo" }

type joinArgs struct{}

func (joinArgs) Kind() string { return "test.join" }

type env struct {
	t      *testing.T
	store  *storage.Clients
	client *nightshift.Client
	h      *nightshift.Handler
}

// newEnv builds the API on a fresh prefix; settings are extra key, value pairs.
func newEnv(t *testing.T, settings ...string) *env {
	t.Helper()
	return newEnvOn(t, testenv.Clients(t, settings...))
}

// newEnvOn builds the API on the given storage clients.
func newEnvOn(t *testing.T, store *storage.Clients) *env {
	t.Helper()
	reg := nightshift.NewRegistry()
	nightshift.AddWorkerFunc(reg, func(ctx context.Context, job *nightshift.Job[echoArgs]) (any, error) {
		if job.Args.Repeat > 0 {
			return nightshift.Bytes{ContentType: "text/plain", Data: []byte(strings.Repeat(job.Args.Text, job.Args.Repeat))}, nil
		}
		return map[string]string{"echo": job.Args.Text}, nil
	}, nil)
	// test.join, a batch finalizer, joins its children's echoes in index order.
	nightshift.AddWorkerFunc(reg, func(ctx context.Context, job *nightshift.Job[joinArgs]) (any, error) {
		children, err := nightshift.BatchChildren(ctx, job.BatchID)
		if err != nil {
			return nil, err
		}
		var parts []string
		for _, c := range children {
			var r map[string]string
			_ = json.Unmarshal(c.Result, &r)
			parts = append(parts, string(c.State)+":"+r["echo"])
		}
		return map[string]string{"joined": strings.Join(parts, ",")}, nil
	}, nil)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	h := nightshift.NewHandler(reg, store, &nightshift.HandlerOptions{Logger: quiet})
	client := nightshift.NewClient(store, nil)
	httpapi.New(client, &httpapi.Options{Kinds: reg.Kinds, Logger: quiet}).Register(h)
	return &env{t: t, store: store, client: client, h: h}
}

type response struct {
	status  int
	headers map[string]string
	body    []byte
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("body %q is not JSON: %v", r.body, err)
	}
	return m
}

// call invokes an HTTP API function the way the host does with forwarding off (§1.7):
// POST /{Function} with Data.req as an object, route data in Params and (double-encoded)
// in Metadata, and reads the http output from Outputs.res.
func (e *env) call(function, method, rawURL, body string, params map[string]string, headers map[string][]string) response {
	e.t.Helper()
	u, _ := url.Parse(rawURL)
	query := map[string]string{}
	for k, v := range u.Query() {
		query[k] = strings.Join(v, ",")
	}
	if headers == nil {
		headers = map[string][]string{"Content-Type": {"application/json"}}
	}
	if params == nil {
		params = map[string]string{}
	}
	req := map[string]any{"Url": rawURL, "Method": strings.ToUpper(method), "Query": query, "Headers": headers,
		"Params": params, "Identities": []any{}, "Body": body}
	enc := func(v any) json.RawMessage { b, _ := json.Marshal(v); return b }
	meta := map[string]json.RawMessage{"sys": enc(map[string]string{"MethodName": function})}
	for k, v := range params {
		meta[k] = enc(string(enc(v)))
	}
	inv, _ := json.Marshal(map[string]any{"Data": map[string]any{"req": req}, "Metadata": meta})
	hr := httptest.NewRequest(http.MethodPost, "/"+function, bytes.NewReader(inv))
	hr.Header.Set("Content-Type", "application/json; charset=utf-8")
	hr.Header.Set(hostproto.HeaderInvocationID, "inv-1")
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, hr)
	if rec.Code != http.StatusOK {
		e.t.Fatalf("invocation of %s failed: %d %s", function, rec.Code, rec.Body.String())
	}
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		e.t.Fatalf("invocation response Content-Type %q", ct)
	}
	var out struct {
		Outputs map[string]httpapi.Response
		Logs    []string
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		e.t.Fatalf("invocation response %s: %v", rec.Body.String(), err)
	}
	res, ok := out.Outputs["res"]
	if !ok {
		e.t.Fatalf("no Outputs.res in %s", rec.Body.String())
	}
	code, err := strconv.Atoi(res.StatusCode)
	if err != nil {
		e.t.Fatalf("statusCode %q", res.StatusCode)
	}
	return response{status: code, headers: res.Headers, body: []byte(res.Body)}
}

const base = "https://app.example.test/api/jobs"

func (e *env) enqueue(body string) response {
	return e.call(httpapi.FunctionEnqueue, "POST", base, body, nil, nil)
}

func (e *env) status(id string, query string) response {
	return e.call(httpapi.FunctionStatus, "GET", base+"/"+id+query, "", map[string]string{"id": id}, nil)
}

// runJobs plays the queue trigger: it delivers every visible job message to RunJob.
func (e *env) runJobs() {
	e.t.Helper()
	for range 50 {
		if testenv.DeliverOnce(e.t, e.store, e.h, nightshift.FunctionRunJob, e.store.Layout.JobsQueue()) == 0 {
			return
		}
	}
}

func TestEnqueueStatusResultFlow(t *testing.T) {
	e := newEnv(t)
	r := e.enqueue(`{"kind":"test.echo","args":{"text":"hi"},"max_attempts":3,"meta":{"tenant":"a"}}`)
	if r.status != http.StatusAccepted {
		t.Fatalf("POST /api/jobs = %d %s", r.status, r.body)
	}
	body := r.json(t)
	id, _ := body["job_id"].(string)
	want := base + "/" + id
	if id == "" || body["status_url"] != want || r.headers["Location"] != want || body["cancel_url"] != want+"/cancel" || body["state"] != "queued" {
		t.Fatalf("202 body %s, Location %q; want status_url and Location %s", r.body, r.headers["Location"], want)
	}
	if r.headers["Content-Type"] != "application/json; charset=utf-8" {
		t.Errorf("Content-Type = %q", r.headers["Content-Type"])
	}
	s := e.status(id, "")
	if s.status != http.StatusOK || s.json(t)["state"] != "queued" || s.json(t)["status_url"] != want || s.headers["Retry-After"] != "2" {
		t.Fatalf("GET status = %d %v %s", s.status, s.headers, s.body)
	}
	e.runJobs()
	s = e.status(id, "")
	if _, has := s.headers["Retry-After"]; has {
		t.Errorf("Retry-After on a finished job: %v", s.headers)
	}
	m := s.json(t)
	res, _ := m["result"].(map[string]any)
	if m["state"] != "succeeded" || res == nil || fmt.Sprint(res["json"]) != "map[echo:hi]" || res["url"] != nil {
		t.Fatalf("GET status after run = %s", s.body)
	}
	if _, has := m["logs"]; has {
		t.Errorf("logs included without ?logs=true: %s", s.body)
	}
	if _, has := m["cancel_url"]; has {
		t.Errorf("cancel_url offered for a finished job: %s", s.body)
	}
	// Cancelling a finished job is a conflict.
	c := e.call(httpapi.FunctionCancel, "POST", want+"/cancel", "", map[string]string{"id": id}, nil)
	checkProblem(t, c, http.StatusConflict, "job-ended", "already succeeded")
}

// TestResultInlineOnMemory checks storage without URLs (the memory driver, no
// store.Linker): a result stored as a blob is answered inline instead of as a link.
func TestResultInlineOnMemory(t *testing.T) {
	e := newEnvOn(t, testenv.Memory(t))
	r := e.enqueue(`{"kind":"test.echo","args":{"text":"abcd","repeat":5000}}`)
	if r.status != http.StatusAccepted {
		t.Fatalf("POST = %d %s", r.status, r.body)
	}
	id := r.json(t)["job_id"].(string)
	e.runJobs()
	st, err := e.client.Status(context.Background(), id)
	if err != nil || st.Result == nil || st.Result.Blob == "" {
		t.Fatalf("the result is not stored as a blob: %+v, %v", st, err)
	}
	s := e.status(id, "")
	var sr struct {
		State  string
		Result struct {
			ContentType string `json:"content_type"`
			Size        int    `json:"size"`
			URL         string `json:"url"`
			Bytes       []byte `json:"bytes"`
		}
	}
	if err := json.Unmarshal(s.body, &sr); err != nil || s.status != http.StatusOK || sr.State != "succeeded" {
		t.Fatalf("status = %d %s (%v)", s.status, s.body, err)
	}
	if sr.Result.URL != "" || string(sr.Result.Bytes) != strings.Repeat("abcd", 5000) || sr.Result.ContentType != "text/plain" || sr.Result.Size != 20000 {
		t.Fatalf("result = %s, want the 20000 bytes inline and no link", s.body)
	}
}

func TestResultLinkDownloads(t *testing.T) {
	e := newEnv(t)
	r := e.enqueue(`{"kind":"test.echo","args":{"text":"abcd","repeat":5000}}`)
	if r.status != http.StatusAccepted {
		t.Fatalf("POST = %d %s", r.status, r.body)
	}
	id := r.json(t)["job_id"].(string)
	e.runJobs()
	s := e.status(id, "?logs=true")
	var sr struct {
		State  string
		Result struct {
			ContentType  string    `json:"content_type"`
			Size         int       `json:"size"`
			URL          string    `json:"url"`
			URLExpiresAt time.Time `json:"url_expires_at"`
			Blob         string    `json:"blob"`
		}
	}
	if err := json.Unmarshal(s.body, &sr); err != nil || sr.State != "succeeded" || sr.Result.URL == "" {
		t.Fatalf("status = %s (%v)", s.body, err)
	}
	if sr.Result.Size != 20000 || sr.Result.ContentType != "text/plain" || sr.Result.Blob != "" {
		t.Errorf("result = %+v", sr.Result)
	}
	if d := time.Until(sr.Result.URLExpiresAt); d < 10*time.Minute || d > 16*time.Minute {
		t.Errorf("link expires in %s, want about 15 minutes", d)
	}
	u, _ := url.Parse(sr.Result.URL)
	if u.Query().Get("sp") != "r" || u.Query().Get("sig") == "" {
		t.Errorf("link %s is not a read-only SAS", sr.Result.URL)
	}
	resp, err := http.Get(sr.Result.URL)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(data) != strings.Repeat("abcd", 5000) || resp.Header.Get("Content-Type") != "text/plain" {
		t.Fatalf("GET result link = %d, %d bytes, %q", resp.StatusCode, len(data), resp.Header.Get("Content-Type"))
	}
	// Read-only: writing through the link is refused.
	put, _ := http.NewRequest(http.MethodPut, sr.Result.URL, strings.NewReader("overwrite"))
	put.Header.Set("x-ms-blob-type", "BlockBlob")
	presp, err := http.DefaultClient.Do(put)
	if err != nil {
		t.Fatal(err)
	}
	presp.Body.Close()
	if presp.StatusCode != http.StatusForbidden {
		t.Fatalf("PUT through the read link = %d, want 403", presp.StatusCode)
	}
	// Without the signature the blob is private.
	u.RawQuery = ""
	if resp, err := http.Get(u.String()); err != nil || resp.StatusCode == 200 {
		t.Fatalf("unsigned GET = %v, %v; want refused", resp.StatusCode, err)
	}
}

func TestCancelQueuedJob(t *testing.T) {
	e := newEnv(t)
	r := e.enqueue(`{"kind":"test.echo","args":{"text":"later"},"run_in_seconds":3600,"job_id":"cancel-me","priority":"low"}`)
	if r.status != http.StatusAccepted || r.json(t)["run_at"] == nil || r.json(t)["queue"] != e.store.Layout.LowQueue() {
		t.Fatalf("POST = %d %s", r.status, r.body)
	}
	c := e.call(httpapi.FunctionCancel, "POST", base+"/cancel-me/cancel", "", map[string]string{"id": "cancel-me"}, nil)
	if c.status != http.StatusOK || c.json(t)["state"] != "cancelled" || c.json(t)["status_url"] != base+"/cancel-me" {
		t.Fatalf("cancel = %d %s", c.status, c.body)
	}
	if s := e.status("cancel-me", ""); s.json(t)["state"] != "cancelled" {
		t.Fatalf("status after cancel = %s", s.body)
	}
	c = e.call(httpapi.FunctionCancel, "POST", base+"/cancel-me/cancel", "", map[string]string{"id": "cancel-me"}, nil)
	checkProblem(t, c, http.StatusConflict, "job-ended", "already cancelled")
}

// checkProblem asserts an RFC 9457 problem document.
func checkProblem(t *testing.T, r response, status int, kind, detail string, fields ...string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status = %d, want %d: %s", r.status, status, r.body)
	}
	if r.headers["Content-Type"] != "application/problem+json" {
		t.Errorf("Content-Type = %q, want application/problem+json", r.headers["Content-Type"])
	}
	var p httpapi.Problem
	if err := json.Unmarshal(r.body, &p); err != nil {
		t.Fatalf("problem body %s: %v", r.body, err)
	}
	if p.Status != status || p.Type != httpapi.ProblemTypeBase+kind || p.Title == "" || !strings.Contains(p.Detail, detail) {
		t.Errorf("problem = %+v, want type %s, status %d, detail containing %q", p, kind, status, detail)
	}
	for i := 0; i+1 < len(fields); i += 2 {
		found := false
		for _, fp := range p.Errors {
			if fp.Field == fields[i] && strings.Contains(fp.Problem, fields[i+1]) {
				found = true
			}
		}
		if !found {
			t.Errorf("errors %+v lack field %q with %q", p.Errors, fields[i], fields[i+1])
		}
	}
}

func TestProblems(t *testing.T) {
	e := newEnv(t)
	if r := e.enqueue(`{"kind":"test.echo","job_id":"taken"}`); r.status != http.StatusAccepted {
		t.Fatalf("setup: %d %s", r.status, r.body)
	}
	if r := e.enqueue(`{"kind":"test.echo","job_id":"first","dedupe_key":"held"}`); r.status != http.StatusAccepted {
		t.Fatalf("setup: %d %s", r.status, r.body)
	}
	cases := []struct {
		name, body   string
		status       int
		kind, detail string
		fields       []string
		contentType  string
	}{
		{"not json", `{"kind":`, 400, "invalid-request", "not a JSON object", nil, ""},
		{"empty", ``, 400, "invalid-request", "body is empty", []string{"kind", "is required"}, ""},
		{"missing kind", `{"args":{}}`, 400, "invalid-request", "kind is required", []string{"kind", "is required"}, ""},
		{"unknown field", `{"kind":"test.echo","colour":1}`, 400, "invalid-request", "colour unknown field", []string{"colour", "unknown field"}, ""},
		{"wrong types", `{"kind":"test.echo","max_attempts":"3","meta":{"a":1}}`, 400, "invalid-request", "max_attempts expected a number",
			[]string{"max_attempts", "expected a number, got string", "meta", "expected"}, ""},
		{"bad time", `{"kind":"test.echo","run_at":"tomorrow"}`, 400, "invalid-request", "RFC 3339", []string{"run_at", "not an RFC 3339 time"}, ""},
		{"bad kind", `{"kind":"has space"}`, 400, "invalid-request", "kind", []string{"kind", "must be 1–128 characters"}, ""},
		{"internal kind", `{"kind":"nightshift.callback","args":{"job_id":"taken","event":"job.succeeded","url":"https://x"}}`, 400, "invalid-request", "reserved", []string{"kind", "internal jobs"}, ""},
		{"unregistered kind", `{"kind":"nope"}`, 400, "invalid-request", "not a kind this app runs", []string{"kind", "check the name"}, ""},
		{"negative", `{"kind":"test.echo","run_in_seconds":-1,"timeout_seconds":-2}`, 400, "invalid-request", "run_in_seconds must be 0 or more",
			[]string{"run_in_seconds", "0 or more", "timeout_seconds", "more than 0"}, ""},
		{"bad job id", `{"kind":"test.echo","job_id":"a b"}`, 400, "invalid-request", "job_id", []string{"job_id", "letters, digits"}, ""},
		{"bad queue", `{"kind":"test.echo","queue":"UPPER"}`, 400, "invalid-request", "queue", []string{"queue", "lowercase"}, ""},
		{"bad priority", `{"kind":"test.echo","priority":"urgent"}`, 400, "invalid-request", "priority", []string{"priority", "not high, normal or low"}, ""},
		{"priority and queue", `{"kind":"test.echo","priority":"low","queue":"abc"}`, 400, "invalid-request", "priority", []string{"priority", "not both"}, ""},
		{"callback field", `{"kind":"test.echo","callback":{"uri":"https://x"}}`, 400, "invalid-request", "callback.uri unknown field", []string{"callback.uri", "unknown field"}, ""},
		{"callback empty", `{"kind":"test.echo","callback":{}}`, 400, "invalid-request", "needs url or queue", []string{"callback", "needs url or queue"}, ""},
		{"callback url", `{"kind":"test.echo","callback":{"url":"not a url"}}`, 400, "invalid-request", "callback.url", []string{"callback.url", "not an absolute https URL"}, ""},
		{"message too large", `{"kind":"test.echo","meta":` + bigMeta() + `}`, 413, "too-large", "queue message holds at most", []string{"meta", "at most 65536"}, ""},
		{"dedupe key held", `{"kind":"test.echo","dedupe_key":"held"}`, 409, "duplicate", "is held by job first", []string{"dedupe_key", "held by job first"}, ""},
		{"huge body", `{"kind":"test.echo","args":"` + strings.Repeat("x", httpapi.MaxRequestBytes) + `"}`, 413, "too-large", "at most", nil, ""},
		{"job id taken", `{"kind":"test.echo","job_id":"taken"}`, 409, "job-exists", "already used", []string{"job_id", "already used"}, ""},
		{"text body", `kind=test.echo`, 415, "unsupported-media-type", "application/json", nil, "text/plain"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var headers map[string][]string
			if tc.contentType != "" {
				headers = map[string][]string{"Content-Type": {tc.contentType}}
			}
			r := e.call(httpapi.FunctionEnqueue, "POST", base, tc.body, nil, headers)
			checkProblem(t, r, tc.status, tc.kind, tc.detail, tc.fields...)
		})
	}
	t.Run("method", func(t *testing.T) {
		checkProblem(t, e.call(httpapi.FunctionEnqueue, "GET", base, "", nil, nil), 405, "method-not-allowed", "use POST")
	})
	t.Run("unknown job", func(t *testing.T) {
		checkProblem(t, e.status("no-such-job", ""), 404, "job-not-found", "no job no-such-job")
	})
	t.Run("bad id", func(t *testing.T) {
		r := e.call(httpapi.FunctionStatus, "GET", base+"/a%20b", "", map[string]string{"id": "a b"}, nil)
		checkProblem(t, r, 400, "invalid-request", "job id", "id", "letters")
	})
	t.Run("instance", func(t *testing.T) {
		r := e.status("no-such-job", "")
		if p := r.json(t); p["instance"] != "/api/jobs/no-such-job" {
			t.Errorf("instance = %v", p["instance"])
		}
	})
}

func TestMalformedInvocationFails(t *testing.T) {
	e := newEnv(t)
	for _, body := range []string{`{"Data":{}}`, `{"Data":{"req":[1]}}`} {
		rec := httptest.NewRecorder()
		e.h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/"+httpapi.FunctionEnqueue, strings.NewReader(body)))
		if rec.Code != http.StatusBadRequest {
			t.Errorf("%s: %d %s, want 400 (a failed invocation)", body, rec.Code, rec.Body.String())
		}
	}
}

func TestLargeArgsAreAccepted(t *testing.T) {
	e := newEnv(t)
	text := strings.Repeat("y", 60000)
	r := e.enqueue(`{"kind":"test.echo","args":{"text":"` + text + `"}}`)
	if r.status != http.StatusAccepted {
		t.Fatalf("POST with 60 KB args = %d %s", r.status, r.body)
	}
	id := r.json(t)["job_id"].(string)
	e.runJobs()
	s := e.status(id, "")
	res, _ := s.json(t)["result"].(map[string]any)
	link, _ := res["url"].(string)
	if s.json(t)["state"] != "succeeded" || link == "" {
		t.Fatalf("status = %.300s", s.body)
	}
	// The 60 KB result is over the inline limit: it comes through the link.
	resp, err := http.Get(link)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct{ Echo string }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.Echo != text {
		t.Fatalf("result through the link: %d bytes, %v", len(out.Echo), err)
	}
}
