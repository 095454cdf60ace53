package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/internal/appfolder"
	"github.com/nightshift-jobs/nightshift/internal/testenv"
	"github.com/nightshift-jobs/nightshift/record"
	"github.com/nightshift-jobs/nightshift/storage"
)

var (
	devHandlerOnce sync.Once
	devHandlerPath string
	devHandlerErr  error
)

// devHandler builds the real ./handler once for the dev tests.
func devHandler(t *testing.T) string {
	t.Helper()
	devHandlerOnce.Do(func() {
		dir, err := os.MkdirTemp("", "nightshift-dev-test-")
		if err != nil {
			devHandlerErr = err
			return
		}
		devHandlerPath = filepath.Join(dir, "handler")
		devHandlerErr = appfolder.Build(context.Background(), testenv.RepoRoot(), "", "", "", devHandlerPath)
	})
	if devHandlerErr != nil {
		t.Fatal(devHandlerErr)
	}
	return devHandlerPath
}

func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// TestDev_PipelineOnReachableStorage runs `dev` against the test Azurite: the real handler
// behind the local host turns a job of an unknown kind into a dead-letter record.
func TestDev_PipelineOnReachableStorage(t *testing.T) {
	getenv := testenv.Env(t)
	out := &syncBuf{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var info *devInfo
	errc := make(chan error, 1)
	ready := make(chan struct{})
	bin, addr := devHandler(t), freeLoopbackAddr(t)
	go func() {
		errc <- runDev(ctx, devConfig{
			Repo: testenv.RepoRoot(), Getenv: getenv, HTTPAddr: addr, UIAddr: "127.0.0.1:0", TimeZone: time.UTC,
			HandlerBinary: bin, StateDir: t.TempDir(), Out: out,
			Log:   slog.New(slog.NewTextHandler(out, nil)),
			Ready: func(i *devInfo) { info = i; close(ready) },
		})
	}()
	select {
	case <-ready:
	case err := <-errc:
		t.Fatalf("dev stopped: %v\n%s", err, out.String())
	case <-time.After(60 * time.Second):
		t.Fatalf("dev not ready\n%s", out.String())
	}
	if info.AzuritePID != 0 {
		t.Error("dev started Azurite although storage was reachable")
	}
	for _, want := range []string{"Queues:      " + info.Clients.Layout.JobsQueue(), "Enqueue a sample job", "HTTP:        http://"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, out.String())
		}
	}
	// The dashboard: its URL is in the summary and opens it.
	if info.UIURL == "" || !strings.Contains(out.String(), "Dashboard:   "+info.UIURL) {
		t.Errorf("summary lacks the dashboard URL %q:\n%s", info.UIURL, out.String())
	} else {
		jar, _ := cookiejar.New(nil)
		resp, err := (&http.Client{Jar: jar}).Get(info.UIURL)
		if err != nil {
			t.Fatal(err)
		}
		page, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(page), "<h1>Overview</h1>") {
			t.Errorf("GET the dashboard: %d %s", resp.StatusCode, page)
		}
	}
	client := nightshift.NewClient(info.Clients, nil)
	res, err := client.EnqueueRaw(ctx, "no_such_kind", json.RawMessage(`{}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		dl, err := client.DeadLetter(ctx, res.JobID)
		if err == nil {
			if dl.Reason != record.ReasonUnknownKind {
				t.Errorf("dead letter %+v", dl)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no dead letter for job %s: %v\n%s", res.JobID, err, out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The HTTP API (JSON-wrapped httpTrigger functions, §1.7) through the local host.
	body := `{"kind":"http_fetch","args":{"url":"https://example.com"}}`
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/api/jobs", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("x-functions-key", info.Host.FunctionKey())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var accepted struct {
		JobID string `json:"job_id"`
	}
	if resp.StatusCode != http.StatusAccepted || json.Unmarshal(raw, &accepted) != nil || accepted.JobID == "" ||
		!strings.Contains(resp.Header.Get("Location"), "/api/jobs/"+accepted.JobID) {
		t.Fatalf("POST /api/jobs: %d %v %s", resp.StatusCode, resp.Header, raw)
	}
	req, _ = http.NewRequestWithContext(ctx, http.MethodGet, resp.Header.Get("Location"), nil)
	req.Header.Set("x-functions-key", info.Host.FunctionKey())
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("GET %s: %v %v", req.URL, resp, err)
	}
	cancel()
	if err := <-errc; err != nil {
		t.Errorf("dev returned %v", err)
	}
}

// TestDev_StartsAzuriteWhenUnreachableAndStopsIt points the settings at free loopback
// ports: dev starts Azurite there (disk location), and stops exactly it on exit.
func TestDev_StartsAzuriteWhenUnreachableAndStopsIt(t *testing.T) {
	if _, err := os.Stat(testenv.AzuriteBinary()); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("Azurite is required under CI=true")
		}
		t.Skip("no Azurite in local/node_modules")
	}
	port := func() int {
		_, p, _ := net.SplitHostPort(freeLoopbackAddr(t))
		n, _ := strconv.Atoi(p)
		return n
	}
	cs := testenv.AzuriteConnectionString(port(), port())
	settings := map[string]string{storage.SettingStorage: cs, storage.SettingNamePrefix: testenv.Prefix(t)}
	state := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var pid int
	errc := make(chan error, 1)
	ready := make(chan struct{})
	bin, addr := devHandler(t), freeLoopbackAddr(t)
	go func() {
		errc <- runDev(ctx, devConfig{
			Repo: testenv.RepoRoot(), Getenv: func(k string) string { return settings[k] }, HTTPAddr: addr,
			TimeZone: time.UTC, HandlerBinary: bin, StateDir: state, Out: io.Discard,
			Log:   slog.New(slog.NewTextHandler(io.Discard, nil)),
			Ready: func(i *devInfo) { pid = i.AzuritePID; close(ready) },
		})
	}()
	select {
	case <-ready:
	case err := <-errc:
		t.Fatalf("dev stopped: %v", err)
	case <-time.After(90 * time.Second):
		t.Fatal("dev not ready")
	}
	if pid == 0 {
		t.Fatal("dev did not start Azurite")
	}
	if _, err := os.Stat(filepath.Join(state, "azurite")); err != nil {
		t.Errorf("no disk location: %v", err)
	}
	cancel()
	if err := <-errc; err != nil {
		t.Errorf("dev returned %v", err)
	}
	if p, err := os.FindProcess(pid); err == nil {
		if err := p.Signal(syscall.Signal(0)); err == nil {
			t.Errorf("Azurite (pid %d) still runs after dev stopped", pid)
		}
	}
}

func TestDev_LoopbackPorts(t *testing.T) {
	p, ok := loopbackPorts("http://127.0.0.1:10001/devstoreaccount1/", "http://localhost:10000/devstoreaccount1/")
	if !ok || p.queue != "10001" || p.blob != "10000" {
		t.Errorf("%+v %v", p, ok)
	}
	if _, ok := loopbackPorts("https://acct.queue.core.windows.net/", "https://acct.blob.core.windows.net/"); ok {
		t.Error("a cloud endpoint counted as loopback")
	}
}

// TestDev_SummaryHidesSAS: with a SAS connection string the service URLs carry sig=…;
// the summary prints them without it.
func TestDev_SummaryHidesSAS(t *testing.T) {
	cs := "BlobEndpoint=http://127.0.0.1:1/devstoreaccount1;QueueEndpoint=http://127.0.0.1:2/devstoreaccount1;SharedAccessSignature=sv=2023-11-03&ss=bq&srt=sco&sp=rwdlacup&se=2030-01-01T00:00:00Z&sig=TOPSECRETSIG"
	store, err := storage.FromEnv(func(k string) string {
		if k == storage.SettingStorage {
			return cs
		}
		return ""
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{testenv.QueueService(store).URL(), testenv.BlobService(store).URL()} {
		if !strings.Contains(u, "TOPSECRETSIG") {
			t.Fatalf("the client URL %q has no SAS: the test would prove nothing", u)
		}
		if got := displayURL(u); strings.Contains(got, "TOPSECRETSIG") || strings.Contains(got, "sig=") || !strings.HasPrefix(got, "http://127.0.0.1:") {
			t.Errorf("displayURL(%q) = %q", u, got)
		}
	}
}
