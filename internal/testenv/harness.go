package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// binaries holds the main packages built for this test process (see BuildBinary).
var binaries struct {
	mu    sync.Mutex
	dir   string
	built map[string]string
}

// BuildBinary builds a main package of this module (pkg relative to the repository root,
// e.g. "./handler") once per test process and returns the executable's path. Call Main
// from the package's TestMain so the executables are removed when the tests end.
func BuildBinary(tb testing.TB, pkg string) string {
	tb.Helper()
	binaries.mu.Lock()
	defer binaries.mu.Unlock()
	if p, ok := binaries.built[pkg]; ok {
		return p
	}
	if binaries.dir == "" {
		dir, err := os.MkdirTemp("", "nightshift-testbin-")
		if err != nil {
			tb.Fatal(err)
		}
		binaries.dir, binaries.built = dir, map[string]string{}
	}
	out := filepath.Join(binaries.dir, fmt.Sprintf("%d-%s", len(binaries.built), filepath.Base(pkg)))
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = RepoRoot()
	if b, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	binaries.built[pkg] = out
	return out
}

// Main runs the tests and then removes what BuildBinary built. Use it as TestMain:
//
//	func TestMain(m *testing.M) { testenv.Main(m) }
func Main(m *testing.M) {
	code := m.Run()
	binaries.mu.Lock()
	if binaries.dir != "" {
		os.RemoveAll(binaries.dir)
	}
	binaries.mu.Unlock()
	os.Exit(code)
}

// WaitFor polls cond every 50 ms until it holds, failing the test when timeout passes
// first (what says what was awaited). The timeout is a bound against hangs, not a
// performance assertion.
func WaitFor(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// LogBuffer collects log output written from several goroutines (a host's, a handler's).
type LogBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

// Write appends p.
func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns everything written so far.
func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Contains reports whether s was written.
func (l *LogBuffer) Contains(s string) bool { return strings.Contains(l.String(), s) }

// Tail returns the last n bytes written, for failure reports.
func (l *LogBuffer) Tail(n int) string {
	s := l.String()
	return s[max(0, len(s)-n):]
}
