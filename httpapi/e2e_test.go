package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/callback"
	"github.com/nightshift-jobs/nightshift/httpapi"
	"github.com/nightshift-jobs/nightshift/internal/appfolder"
	"github.com/nightshift-jobs/nightshift/internal/funchost"
	"github.com/nightshift-jobs/nightshift/internal/testenv"
	"github.com/nightshift-jobs/nightshift/record"
	"github.com/nightshift-jobs/nightshift/storage"
)

func TestMain(m *testing.M) { testenv.Main(m) }

var fastPolling = regexp.MustCompile(`"maxPollingInterval": "[^"]*"`)

// TestE2EThroughLocalHost runs the real handler (handler/, with the example kinds, the
// HTTP API and callbacks wired as in production) under the local Functions host, from an
// app folder assembled from this repository, and talks to it over HTTP like any app would:
// function keys, 202 + Location, polling the status URL, cancel, and a signed webhook.
func TestE2EThroughLocalHost(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the handler")
	}
	cs := testenv.ConnectionString(t)
	ctx := context.Background()
	dir := t.TempDir()
	bin := testenv.BuildBinary(t, "./handler")
	prefix := testenv.Prefix(t)
	if err := appfolder.Assemble(ctx, dir, appfolder.Options{RepoRoot: testenv.RepoRoot(), HandlerBinary: bin, NamePrefix: prefix}); err != nil {
		t.Fatal(err)
	}
	// Only the functions this test drives: the jobs queue, its poison queue and the HTTP
	// API (other functions, such as timers, need settings of their own).
	keep := map[string]bool{nightshift.FunctionRunJob: true, nightshift.FunctionRunDeadLetter: true,
		httpapi.FunctionEnqueue: true, httpapi.FunctionStatus: true, httpapi.FunctionCancel: true,
		httpapi.FunctionBatchStart: true, httpapi.FunctionBatchStatus: true}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, de := range entries {
		if de.IsDir() && !keep[de.Name()] {
			if err := os.RemoveAll(filepath.Join(dir, de.Name())); err != nil {
				t.Fatal(err)
			}
		}
	}
	hj, err := os.ReadFile(filepath.Join(dir, "host.json"))
	if err != nil {
		t.Fatal(err)
	}
	hj = fastPolling.ReplaceAll(hj, []byte(`"maxPollingInterval": "00:00:00.500"`))
	if err := os.WriteFile(filepath.Join(dir, "host.json"), hj, 0o644); err != nil {
		t.Fatal(err)
	}

	// The job calls this server (http_fetch), and the webhook lands here too.
	const e2eSecret = "whsec_ZTJlLXNlY3JldC1lMmUtc2VjcmV0LWUyZS1zZWNyZXQ="
	var mu sync.Mutex
	var hooks [][]byte
	var hookErrs []error
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hook" {
			body, _ := io.ReadAll(r.Body)
			mu.Lock()
			hooks = append(hooks, body)
			hookErrs = append(hookErrs, callback.Verify([]string{e2eSecret}, r.Header, body, time.Now(), time.Minute))
			mu.Unlock()
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"pong":true}`)
	}))
	defer srv.Close()

	const key = "e2e-function-key"
	settings := map[string]string{
		storage.SettingStorage:              cs,
		storage.SettingNamePrefix:           prefix,
		funchost.SettingFunctionKey:         key,
		"NIGHTSHIFT_FETCH_ALLOW_PRIVATE":    "true",
		callback.SettingWebhookSecrets:      `{"` + srv.URL + `": "` + e2eSecret + `"}`,
		callback.SettingWebhookAllowPrivate: "true",
		callback.SettingWebhookAllowHTTP:    "true",
	}
	store, err := storage.FromEnv(func(k string) string { return settings[k] }, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	logs := &testenv.LogBuffer{}
	host, err := funchost.New(dir, funchost.Options{
		Settings: settings, Getenv: func(string) string { return "" }, HTTPAddr: addr,
		Logger: slog.New(slog.NewTextHandler(logs, nil)), DrainTimeout: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	hctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- host.Run(hctx) }()
	t.Cleanup(func() {
		stop()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("local host did not stop")
		}
		if t.Failed() {
			t.Logf("host log:\n%s", logs.String())
		}
	})

	base := "http://" + addr + "/api/jobs"
	do := func(method, url, body string, hdr map[string]string) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequest(method, url, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		var resp *http.Response
		for try := 0; ; try++ { // the host's listener opens once the handler is up
			resp, err = http.DefaultClient.Do(req)
			if err == nil || try > 100 {
				break
			}
			time.Sleep(100 * time.Millisecond)
			req, _ = http.NewRequest(method, url, strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			for k, v := range hdr {
				req.Header.Set(k, v)
			}
		}
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	withKey := map[string]string{"x-functions-key": key}

	job := fmt.Sprintf(`{"kind":"http_fetch","args":{"url":%q},"callback":{"url":%q}}`, srv.URL+"/ping", srv.URL+"/hook")
	// Without the function key, or with a wrong one: refused by the host.
	if resp, _ := do("POST", base, job, nil); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("POST without a key = %d, want 401", resp.StatusCode)
	}
	if resp, _ := do("POST", base, job, map[string]string{"x-functions-key": "wrong"}); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("POST with a wrong key = %d, want 401", resp.StatusCode)
	}
	if d, _ := nightshift.NewClient(store, nil).QueueDepths(ctx); d[0].Messages != 0 {
		t.Fatalf("a refused request enqueued %d messages", d[0].Messages)
	}

	resp, body := do("POST", base, job, withKey)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST /api/jobs = %d %s", resp.StatusCode, body)
	}
	var acc struct {
		JobID     string `json:"job_id"`
		StatusURL string `json:"status_url"`
	}
	if err := json.Unmarshal(body, &acc); err != nil || acc.StatusURL != base+"/"+acc.JobID || resp.Header.Get("Location") != acc.StatusURL {
		t.Fatalf("202 body %s, Location %q", body, resp.Header.Get("Location"))
	}
	// Follow the status URL (with the key in ?code=) until the job ends.
	var st struct {
		State  string `json:"state"`
		Result struct {
			JSON struct {
				Status int             `json:"status"`
				Body   json.RawMessage `json:"body"`
			} `json:"json"`
		} `json:"result"`
		Callback *record.CallbackOutcome `json:"callback"`
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, body = do("GET", acc.StatusURL+"?code="+key, "", nil)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json; charset=utf-8" {
			t.Fatalf("GET status = %d %q %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
		if err := json.Unmarshal(body, &st); err != nil {
			t.Fatal(err)
		}
		if st.State == "succeeded" && st.Callback != nil && st.Callback.Delivered {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("job did not succeed with its callback delivered within 60s: %s", body)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if st.Result.JSON.Status != 200 || string(st.Result.JSON.Body) != `{"pong":true}` {
		t.Fatalf("result = %s", body)
	}
	mu.Lock()
	if len(hooks) != 1 || hookErrs[0] != nil || !strings.Contains(string(hooks[0]), `"event":"job.succeeded"`) {
		t.Fatalf("webhooks = %d, first signature check: %v", len(hooks), hookErrs)
	}
	mu.Unlock()

	// Cancel a delayed job over HTTP; the status URL answers cancelled.
	resp, body = do("POST", base, `{"kind":"http_fetch","args":{"url":"https://example.com"},"run_in_seconds":600}`, withKey)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST delayed = %d %s", resp.StatusCode, body)
	}
	_ = json.Unmarshal(body, &acc)
	if resp, body = do("POST", acc.StatusURL+"/cancel", "", withKey); resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"state":"cancelled"`) {
		t.Fatalf("cancel = %d %s", resp.StatusCode, body)
	}
	if resp, body = do("POST", acc.StatusURL+"/cancel", "", withKey); resp.StatusCode != http.StatusConflict || resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("second cancel = %d %q %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	// A batch over HTTP: three fetches and a finalizer, followed on the batch's status URL.
	ping := fmt.Sprintf(`{"kind":"http_fetch","args":{"url":%q}}`, srv.URL+"/ping")
	resp, body = do("POST", "http://"+addr+"/api/batches", `{"children":[`+ping+","+ping+","+ping+`],"finalizer":`+ping+`}`, withKey)
	var bacc struct {
		StatusURL string `json:"status_url"`
	}
	if err := json.Unmarshal(body, &bacc); err != nil || resp.StatusCode != http.StatusAccepted || resp.Header.Get("Location") != bacc.StatusURL {
		t.Fatalf("POST /api/batches = %d %s", resp.StatusCode, body)
	}
	for deadline := time.Now().Add(60 * time.Second); ; {
		resp, body = do("GET", bacc.StatusURL, "", withKey)
		var bs struct {
			State     string `json:"state"`
			Succeeded int    `json:"succeeded"`
			Finalizer struct {
				State string `json:"state"`
			} `json:"finalizer"`
		}
		if err := json.Unmarshal(body, &bs); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET batch = %d %s", resp.StatusCode, body)
		}
		if bs.State == "succeeded" && bs.Succeeded == 3 && bs.Finalizer.State == "succeeded" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("batch did not finish within 60s: %s", body)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// A bad request comes back as a problem document through the host.
	resp, body = do("POST", base, `{"kind":"no_such_kind","colour":"red"}`, withKey)
	if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Content-Type") != "application/problem+json" || !strings.Contains(string(body), `"field":"colour"`) {
		t.Fatalf("bad request = %d %q %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
}
