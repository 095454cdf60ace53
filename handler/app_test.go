package main

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nightshift-jobs/nightshift/hostproto"
	"github.com/nightshift-jobs/nightshift/internal/testenv"
	"github.com/nightshift-jobs/nightshift/storage"
)

func memoryApp(t *testing.T, settings map[string]string) (*storage.Clients, func(string) string) {
	t.Helper()
	store, err := storage.NewMemory("", time.Now)
	if err != nil {
		t.Fatal(err)
	}
	return store, func(k string) string { return settings[k] }
}

// The checked-in functions/ folder is what the handler's app generates, byte for byte, and
// holds no function the app does not serve.
func TestFunctionFilesMatchCheckedIn(t *testing.T) {
	store, getenv := memoryApp(t, nil)
	app, err := newApp(getenv, slog.New(slog.NewTextHandler(io.Discard, nil)), store)
	if err != nil {
		t.Fatal(err)
	}
	files, err := app.FunctionFiles()
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 22 {
		t.Errorf("the app renders %d function.json files, want the 22 in functions/", len(files))
	}
	drift, err := app.CheckFunctions(filepath.Join(testenv.RepoRoot(), "functions"))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range drift {
		t.Errorf("functions/%s (regenerate the folder from the app)", d)
	}
	if got := app.Handler().Functions(); len(got) != len(files) {
		t.Errorf("the handler serves %v, the app describes %d functions", got, len(files))
	}
}

// NIGHTSHIFT_MAX_PAYLOAD_BYTES, read once by the app, bounds what the HTTP API's client
// accepts: args of 1,008 bytes are refused with 413 when the limit is 100, and accepted
// without it.
func TestMaxPayloadHonouredByHTTPAPI(t *testing.T) {
	for _, c := range []struct {
		limit string
		want  int
	}{{"100", http.StatusRequestEntityTooLarge}, {"", http.StatusAccepted}} {
		store, getenv := memoryApp(t, map[string]string{"NIGHTSHIFT_MAX_PAYLOAD_BYTES": c.limit})
		app, err := newApp(getenv, slog.New(slog.NewTextHandler(io.Discard, nil)), store)
		if err != nil {
			t.Fatal(err)
		}
		args := `{"url":"https://example.test/` + strings.Repeat("a", 1008-len(`{"url":"https://example.test/"}`)) + `"}`
		if len(args) != 1008 {
			t.Fatalf("args are %d bytes", len(args))
		}
		body := `{"kind":"http_fetch","args":` + args + `}`
		if got := enqueueViaAPI(t, app.Handler(), body); got != c.want {
			t.Errorf("limit %q: POST /api/jobs answered %d, want %d", c.limit, got, c.want)
		}
	}
}

// enqueueViaAPI sends POST /api/jobs as the host does (an HTTP-triggered invocation) and
// returns the API's status code.
func enqueueViaAPI(t *testing.T, h http.Handler, body string) int {
	t.Helper()
	req := map[string]any{"Url": "https://app.example.test/api/jobs", "Method": "POST", "Query": map[string]string{},
		"Headers": map[string][]string{"Content-Type": {"application/json"}}, "Params": map[string]string{}, "Body": body}
	inv, _ := json.Marshal(map[string]any{"Data": map[string]any{"req": req}, "Metadata": map[string]any{}})
	hr := httptest.NewRequest(http.MethodPost, "/JobsAPIEnqueue", bytes.NewReader(inv))
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set(hostproto.HeaderInvocationID, "inv-1")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, hr)
	if rec.Code != http.StatusOK {
		t.Fatalf("invocation failed: %d %s", rec.Code, rec.Body.String())
	}
	var out struct {
		Outputs map[string]struct {
			StatusCode string `json:"statusCode"`
		}
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatal(err)
	}
	code, err := strconv.Atoi(out.Outputs["res"].StatusCode)
	if err != nil {
		t.Fatalf("statusCode in %s: %v", rec.Body.String(), err)
	}
	return code
}

// The shipped handler serves the dashboard as its Dashboard function: a JSON-wrapped GET
// without the function key is refused, one with it renders the overview with the key on
// its links.
func TestDashboardFunctionServed(t *testing.T) {
	store, getenv := memoryApp(t, nil)
	app, err := newApp(getenv, slog.New(slog.NewTextHandler(io.Discard, nil)), store)
	if err != nil {
		t.Fatal(err)
	}
	get := func(rawURL string) (status int, body string) {
		t.Helper()
		inv, _ := json.Marshal(map[string]any{"Data": map[string]any{"req": map[string]any{
			"Url": rawURL, "Method": "GET", "Query": map[string]string{}, "Headers": map[string][]string{}, "Params": map[string]string{}, "Body": ""}},
			"Metadata": map[string]any{}})
		req := httptest.NewRequest(http.MethodPost, "/Dashboard", bytes.NewReader(inv))
		req.Header.Set("Content-Type", "application/json; charset=utf-8")
		rec := httptest.NewRecorder()
		app.Handler().ServeHTTP(rec, req)
		var out struct {
			Outputs struct {
				Res struct {
					StatusCode string `json:"statusCode"`
					Body       string `json:"body"`
				} `json:"res"`
			}
		}
		if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &out) != nil {
			t.Fatalf("invocation %s: %d %s", rawURL, rec.Code, rec.Body)
		}
		n, _ := strconv.Atoi(out.Outputs.Res.StatusCode)
		return n, out.Outputs.Res.Body
	}
	if status, _ := get("https://app.example/api/ui/"); status != http.StatusUnauthorized {
		t.Fatalf("without the key: %d", status)
	}
	status, body := get("https://app.example/api/ui/?code=k1")
	if status != http.StatusOK || !strings.Contains(body, `href="/api/ui/jobs?code=k1"`) {
		t.Fatalf("with the key: %d %s", status, body)
	}
}
