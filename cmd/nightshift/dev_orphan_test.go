//go:build linux

package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nightshift-jobs/nightshift/internal/testenv"
)

// devChildEnv makes this test binary play `nightshift dev` in a process of its own (see
// TestDev_KilledLeavesNoHandler).
const devChildEnv = "NIGHTSHIFT_TEST_DEV_CHILD"

// TestDevChildProcess is not a test: run with devChildEnv set, it is the `dev` process
// that TestDev_KilledLeavesNoHandler kills. It prints "ready" once the handler serves.
func TestDevChildProcess(t *testing.T) {
	if os.Getenv(devChildEnv) == "" {
		return
	}
	ready := make(chan struct{})
	go func() {
		<-ready
		fmt.Println("ready")
	}()
	err := runDev(context.Background(), devConfig{
		Repo: testenv.RepoRoot(), Getenv: os.Getenv, HTTPAddr: os.Getenv(devChildEnv + "_ADDR"), TimeZone: time.UTC,
		HandlerBinary: os.Getenv(devChildEnv + "_HANDLER"), StateDir: os.Getenv(devChildEnv + "_STATE"),
		Out: io.Discard, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Ready: func(*devInfo) { close(ready) },
	})
	t.Fatalf("dev returned: %v", err) // it runs until killed
}

// A SIGKILLed `dev` (and so its local host) leaves no handler process behind: the handler
// gets the parent-death signal although it runs in its own process group.
func TestDev_KilledLeavesNoHandler(t *testing.T) {
	getenv := testenv.Env(t)
	cmd := exec.Command(os.Args[0], "-test.run", "^TestDevChildProcess$")
	cmd.Env = append(os.Environ(), devChildEnv+"=1", devChildEnv+"_ADDR="+freeLoopbackAddr(t),
		devChildEnv+"_HANDLER="+devHandler(t), devChildEnv+"_STATE="+t.TempDir(),
		"AzureWebJobsStorage="+getenv("AzureWebJobsStorage"), "NIGHTSHIFT_NAME_PREFIX="+getenv("NIGHTSHIFT_NAME_PREFIX"))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	readyc := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if sc.Text() == "ready" {
				readyc <- true
				break
			}
		}
		_, _ = io.Copy(io.Discard, out)
		readyc <- false
	}()
	select {
	case ok := <-readyc:
		if !ok {
			t.Fatal("the dev process ended before it was ready")
		}
	case <-time.After(90 * time.Second):
		t.Fatal("the dev process did not get ready")
	}
	// The handler may still be starting when dev is ready.
	var handlers []int
	for deadline := time.Now().Add(30 * time.Second); len(handlers) == 0; handlers = childrenOf(t, cmd.Process.Pid) {
		if time.Now().After(deadline) {
			t.Fatal("the dev process runs no child process (the handler)")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	for _, pid := range handlers {
		deadline := time.Now().Add(30 * time.Second)
		for running(pid) {
			if time.Now().After(deadline) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
				t.Fatalf("handler pid %d still runs after its host was killed", pid)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// childrenOf lists the processes whose parent is pid.
func childrenOf(t *testing.T, pid int) []int {
	t.Helper()
	stats, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, p := range stats {
		if ppid, _, ok := procStat(p); ok && ppid == pid {
			child, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
			out = append(out, child)
		}
	}
	return out
}

// running reports whether pid exists and is not a zombie (a dead process whose new parent
// has not reaped it yet runs no code).
func running(pid int) bool {
	_, state, ok := procStat(fmt.Sprintf("/proc/%d/stat", pid))
	return ok && state != "Z" && state != "X"
}

// procStat reads the parent pid and the state of /proc/<pid>/stat.
func procStat(path string) (ppid int, state string, ok bool) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return 0, "", false
	}
	// pid (comm) state ppid …; comm may hold spaces and parentheses.
	rest := string(raw[strings.LastIndexByte(string(raw), ')')+1:])
	f := strings.Fields(rest)
	if len(f) < 2 {
		return 0, "", false
	}
	ppid, err = strconv.Atoi(f[1])
	return ppid, f[0], err == nil
}
