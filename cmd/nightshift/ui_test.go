package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"os"
	"strings"
	"testing"

	"github.com/nightshift-jobs/nightshift/storage"
)

// TestUICommand serves the dashboard on a free loopback port, opens it with the printed
// URL and checks the usage and settings errors' exit codes.
func TestUICommand(t *testing.T) {
	e := newCLIEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	var out, errb bytes.Buffer
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- runUI(ctx, uiConfig{Addr: "127.0.0.1:0", Token: "tok-1234567890", JSON: true, Getenv: os.Getenv, Out: &out, Err: &errb,
			Ready: func(u string) { ready <- u }})
	}()
	var login string
	select {
	case login = <-ready:
	case err := <-done:
		t.Fatalf("ui ended: %v", err)
	}
	var printed struct {
		URL            string `json:"url"`
		Addr           string `json:"addr"`
		TokenGenerated bool   `json:"token_generated"`
	}
	if err := json.Unmarshal(out.Bytes(), &printed); err != nil || printed.URL != login || printed.TokenGenerated || !strings.HasPrefix(printed.Addr, "127.0.0.1:") {
		t.Fatalf("--json: %v %q", err, out.String())
	}
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar}
	resp, err := hc.Get(login)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), e.store.Layout.JobsQueue()) {
		t.Fatalf("overview: %d %s", resp.StatusCode, body)
	}
	if strings.Contains(string(body), "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50") {
		t.Fatal("the overview shows the account key")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("ui after Ctrl-C: %v", err)
	}

	if _, _, code := e.run("", "ui", "--addr", "nonsense"); code != exitUsage {
		t.Fatalf("ui --addr nonsense: exit %d", code)
	}
	if _, _, code := e.run("", "ui", "extra"); code != exitUsage {
		t.Fatalf("ui extra: exit %d", code)
	}
	t.Setenv(storage.SettingStorage, "AccountName=x")
	if _, stderr, code := e.run("", "ui", "--addr", "127.0.0.1:0"); code != exitFailure || !strings.Contains(stderr, "storage settings") {
		t.Fatalf("ui with bad storage settings: exit %d %q", code, stderr)
	}
	if !isLoopback("127.0.0.1:1") || !isLoopback("[::1]:1") || isLoopback("0.0.0.0:1") {
		t.Fatal("isLoopback")
	}
}
