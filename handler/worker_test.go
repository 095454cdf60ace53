package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nightshift-jobs/nightshift/internal/testenv"
	"github.com/nightshift-jobs/nightshift/worker"
)

// TestWorkerSubcommand: `handler worker --help` lists the flags and exits 0; `handler
// worker` without storage settings exits 1 naming the setting.
func TestWorkerSubcommand(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "handler")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	help := exec.Command(bin, "worker", "--help")
	help.Env = []string{"PATH=" + os.Getenv("PATH")}
	out, err := help.CombinedOutput()
	if err != nil {
		t.Fatalf("handler worker --help: %v\n%s", err, out)
	}
	for _, want := range []string{"-concurrency", "-health-addr", "-drain-timeout", "-queues", "-no-timers", worker.SettingDrainTimeout} {
		if !strings.Contains(string(out), want) {
			t.Errorf("--help does not mention %s:\n%s", want, out)
		}
	}
	run := exec.Command(bin, "worker", "--health-addr", "127.0.0.1:0")
	run.Env = []string{"PATH=" + os.Getenv("PATH")}
	var stderr testenv.LogBuffer
	run.Stderr = &stderr
	err = run.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("handler worker without settings: %v, want exit code 1", err)
	}
	if !strings.Contains(stderr.String(), "setting AzureWebJobsStorage") {
		t.Errorf("stderr does not name AzureWebJobsStorage:\n%s", stderr.String())
	}
}
