package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// EnvRunsDir names the setting through which end-to-end tests give their test handlers a
// directory in which to record job runs (RecordRun), so tests can count them (Runs).
const EnvRunsDir = "E2E_DIR"

// RecordRun appends a line with this process's pid to dir/id; nothing when dir is "".
// Test handlers call it from every job run.
func RecordRun(dir, id string) {
	if dir == "" {
		return
	}
	f, err := os.OpenFile(filepath.Join(dir, id), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		panic(err)
	}
	defer f.Close()
	if _, err := fmt.Fprintf(f, "%d\n", os.Getpid()); err != nil {
		panic(err)
	}
}

// Runs counts the runs RecordRun recorded in dir/id.
func Runs(dir, id string) int {
	b, err := os.ReadFile(filepath.Join(dir, id))
	if err != nil {
		return 0
	}
	return strings.Count(string(b), "\n")
}
