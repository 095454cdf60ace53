// Package chaos holds the crash-storm test (chaos_test.go) and what it shares with its job
// handler (./chaoshandler): the job kind, the result each job must produce, and the run
// records the handler writes so the test can count runs per job.
//
// The test runs a few hundred jobs through the local Functions host (a separate process)
// while it SIGKILLs the handler every few seconds, SIGKILLs the host once, and stops and
// restarts Azurite once; then it checks that no job was lost or corrupted and that no job's
// status ever went backwards. TestCrashStormFleet runs the same storm on a fleet of
// `chaoshandler worker` processes (worker mode) next to the local host, SIGKILLing one
// worker after another. docs/reliability.md describes both and their soak runs.
package chaos

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nightshift-jobs/nightshift/internal/testenv"
)

// Kind is the job kind the chaos handler registers.
const Kind = "chaos.work"

// EnvReceiveVisibility, set to a duration, is the visibility with which the chaos handler
// run as `chaoshandler worker` receives messages (the host's 10 min otherwise), so that
// the messages a SIGKILLed worker held reappear within the storm.
const EnvReceiveVisibility = "NIGHTSHIFT_CHAOS_RECEIVE_VISIBILITY"

// Args are a chaos job's arguments: a number, a salt, and how long the run takes.
type Args struct {
	N    int    `json:"n"`
	Salt string `json:"salt"`
	MS   int    `json:"ms"`
}

// Kind implements nightshift.JobArgs.
func (Args) Kind() string { return Kind }

// Result is what a chaos job returns: a function of its arguments only, so a result that
// differs from Expected(args) is corrupt.
type Result struct {
	N      int    `json:"n"`
	Digest string `json:"digest"`
}

// Expected is the result a job with args a must have.
func Expected(a Args) Result {
	sum := sha256.Sum256(fmt.Appendf(nil, "nightshift-chaos/%d/%s", a.N, a.Salt))
	return Result{N: a.N, Digest: hex.EncodeToString(sum[:])}
}

// endSuffix names the file, next to testenv.RecordRun's, that holds a job's finished runs.
const endSuffix = ".ends"

// Run is one finished run of a job, as the handler recorded it.
type Run struct {
	PID   int       `json:"pid"`
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
}

// Work is the chaos job: it records the run's start (testenv.RecordRun in dir), sleeps
// a.MS milliseconds (or until ctx ends), records the run's end and returns Expected(a).
// With dir "" nothing is recorded.
func Work(ctx context.Context, dir, jobID string, a Args) (Result, error) {
	start := time.Now()
	testenv.RecordRun(dir, jobID)
	t := time.NewTimer(time.Duration(a.MS) * time.Millisecond)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return Result{}, ctx.Err()
	case <-t.C:
	}
	if dir != "" {
		line, err := json.Marshal(Run{PID: os.Getpid(), Start: start, End: time.Now()})
		if err != nil {
			return Result{}, err
		}
		if err := appendLine(filepath.Join(dir, jobID+endSuffix), line); err != nil {
			return Result{}, err
		}
	}
	return Expected(a), nil
}

func appendLine(path string, line []byte) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(append(line, '\n')); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// Runs returns how many runs of jobID started (testenv.Runs) and the runs that finished,
// as recorded in dir. A line cut short by a kill is skipped.
func Runs(dir, jobID string) (started int, finished []Run) {
	started = testenv.Runs(dir, jobID)
	b, err := os.ReadFile(filepath.Join(dir, jobID+endSuffix))
	if err != nil {
		return started, nil
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		var r Run
		if json.Unmarshal([]byte(line), &r) == nil {
			finished = append(finished, r)
		}
	}
	return started, finished
}
