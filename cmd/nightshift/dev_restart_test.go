//go:build unix

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nightshift-jobs/nightshift"
	"github.com/nightshift-jobs/nightshift/internal/testenv"
	"github.com/nightshift-jobs/nightshift/record"
)

// crashingHandler writes a handler that exits at start-up the first n times it is started,
// then runs the real handler; starts counts the starts.
func crashingHandler(t *testing.T, n int) (path, starts string) {
	t.Helper()
	dir := t.TempDir()
	starts, path = filepath.Join(dir, "starts"), filepath.Join(dir, "handler")
	script := fmt.Sprintf(`#!/bin/sh
n=$(cat %[1]q 2>/dev/null || echo 0); n=$((n+1)); echo $n > %[1]q
if [ "$n" -le %[2]d ]; then echo "crash $n at start-up" >&2; exit 3; fi
exec %[3]q "$@"
`, starts, n, devHandler(t))
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path, starts
}

// A handler that dies three times makes the local host shut down (the host's rule); dev
// starts a new host, as Azure would, and that host serves the next job.
func TestDev_SurvivesThreeHandlerCrashes(t *testing.T) {
	getenv := testenv.Env(t)
	bin, starts := crashingHandler(t, 3)
	out := &syncBuf{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var info *devInfo
	errc := make(chan error, 1)
	ready := make(chan struct{})
	go func() {
		errc <- runDev(ctx, devConfig{
			Repo: testenv.RepoRoot(), Getenv: getenv, HTTPAddr: freeLoopbackAddr(t), TimeZone: time.UTC,
			HandlerBinary: bin, StateDir: t.TempDir(), Out: out, Log: slog.New(slog.NewTextHandler(out, nil)),
			Ready: func(i *devInfo) { info = i; close(ready) },
		})
	}()
	select {
	case <-ready:
	case err := <-errc:
		t.Fatalf("dev stopped: %v\n%s", err, out.String())
	}
	client := nightshift.NewClient(info.Clients, nil)
	res, err := client.EnqueueRaw(ctx, "no_such_kind", json.RawMessage(`{}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(90 * time.Second); ; {
		if dl, err := client.DeadLetter(ctx, res.JobID); err == nil {
			if dl.Reason != record.ReasonUnknownKind {
				t.Errorf("dead letter %+v", dl)
			}
			break
		}
		select {
		case err := <-errc:
			t.Fatalf("dev ended: %v\n%s", err, out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s never handled\n%s", res.JobID, out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(out.String(), "starting a new host") {
		t.Errorf("dev did not say it restarted the host:\n%s", out.String())
	}
	if n, _ := os.ReadFile(starts); strings.TrimSpace(string(n)) != "4" {
		t.Errorf("the handler was started %s times, want 3 crashes and 1 that serves", n)
	}
	cancel()
	if err := <-errc; err != nil {
		t.Errorf("dev returned %v", err)
	}
}

// With NoRestart, dev ends with the host's error after three handler failures.
func TestDev_NoRestartExits(t *testing.T) {
	bin, _ := crashingHandler(t, 1000)
	out := &syncBuf{}
	err := runDev(context.Background(), devConfig{
		Repo: testenv.RepoRoot(), Getenv: testenv.Env(t), HTTPAddr: freeLoopbackAddr(t), TimeZone: time.UTC,
		HandlerBinary: bin, StateDir: t.TempDir(), Out: out, Log: slog.New(slog.NewTextHandler(out, nil)), NoRestart: true,
	})
	if err == nil || !strings.Contains(err.Error(), "Exceeded http worker restart retry count") {
		t.Fatalf("dev returned %v, want the host's restart-count error\n%s", err, out.String())
	}
}
