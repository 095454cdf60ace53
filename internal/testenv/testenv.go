// Package testenv gives tests a real Azurite to talk to.
//
// CI (.ci/run) starts one Azurite per test run and exports NIGHTSHIFT_TEST_STORAGE, a
// connection string. Without it, the first test that asks starts an in-memory Azurite from
// local/node_modules for this test process (it dies with the process). Without either,
// storage tests skip, except when CI=true, where they fail: a green CI run that skipped
// the storage tests would prove nothing.
package testenv

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nightshift-jobs/nightshift/internal/proc"
	"github.com/nightshift-jobs/nightshift/storage"
)

// EnvStorage names the variable holding the test storage connection string.
const EnvStorage = "NIGHTSHIFT_TEST_STORAGE"

var (
	once     sync.Once
	connStr  string
	startErr error
)

// RepoRoot returns the repository root (the directory holding go.mod).
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// ConnectionString returns a connection string for a running Azurite, skipping the test
// (or failing it under CI=true) when none can be had.
func ConnectionString(t testing.TB) string {
	t.Helper()
	if cs := os.Getenv(EnvStorage); cs != "" {
		return cs
	}
	once.Do(func() { connStr, startErr = startAzurite() })
	if startErr != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("Azurite is required under CI=true: %v", startErr)
		}
		t.Skipf("no Azurite: %v (run `npm ci --prefix local` or set %s)", startErr, EnvStorage)
	}
	return connStr
}

// Prefix returns a fresh NIGHTSHIFT_NAME_PREFIX value, so tests sharing one Azurite do not
// see each other's queues and containers.
func Prefix(t testing.TB) string {
	t.Helper()
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	return "t" + hex.EncodeToString(b)
}

// Env returns a getenv function for the test storage with a fresh name prefix, plus any
// extra settings given as key, value pairs.
func Env(t testing.TB, kv ...string) func(string) string {
	t.Helper()
	m := map[string]string{
		storage.SettingStorage:    ConnectionString(t),
		storage.SettingNamePrefix: Prefix(t),
	}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

// Clients returns storage clients on a fresh prefix with every queue and container created.
func Clients(t testing.TB, kv ...string) *storage.Clients {
	t.Helper()
	c, err := storage.FromEnv(Env(t, kv...), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	return c
}

// Memory returns storage clients backed by the in-memory driver (storage.NewMemory) on a
// fresh prefix, every queue and container created: no Azurite needed. Only the storage
// package's functions (and code built on them) work on it.
func Memory(t testing.TB) *storage.Clients {
	t.Helper()
	c, err := storage.NewMemory(Prefix(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Backend is a way to get storage clients for a test: Azurite or memory.
type Backend struct {
	Name    string
	Clients func(t testing.TB) *storage.Clients
}

// Backends are the storage backends a storage test runs against: Azurite (skipping, or
// failing under CI=true, without it; see ConnectionString) and the in-memory driver.
func Backends() []Backend {
	return []Backend{
		{Name: "azurite", Clients: func(t testing.TB) *storage.Clients { t.Helper(); return Clients(t) }},
		{Name: "memory", Clients: Memory},
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// AzuriteBinary returns the path of the pinned Azurite under local/node_modules.
func AzuriteBinary() string {
	return filepath.Join(RepoRoot(), "local", "node_modules", ".bin", "azurite")
}

func startAzurite() (string, error) {
	cs, _, err := StartAzurite("")
	return cs, err
}

// StartAzurite starts the pinned Azurite on free loopback ports and waits until it
// listens: in memory when dir is "", else keeping its data in dir (the in-memory store
// stalls under sustained churn, so benchmarks want a disk store). It dies with the test
// process; stop ends it sooner.
func StartAzurite(dir string) (connStr string, stop func(), err error) {
	bin := AzuriteBinary()
	if _, err := os.Stat(bin); err != nil {
		return "", nil, fmt.Errorf("%s not found", bin)
	}
	var ports [3]int
	for i := range ports {
		p, err := freePort()
		if err != nil {
			return "", nil, err
		}
		ports[i] = p
	}
	store := []string{"--inMemoryPersistence", "--extentMemoryLimit", "256"}
	if dir != "" {
		store = []string{"--location", dir}
	}
	cmd := exec.Command(bin, append(store,
		"--blobHost", "127.0.0.1", "--blobPort", fmt.Sprint(ports[0]),
		"--queueHost", "127.0.0.1", "--queuePort", fmt.Sprint(ports[1]),
		"--tableHost", "127.0.0.1", "--tablePort", fmt.Sprint(ports[2]),
		"--skipApiVersionCheck", "--disableTelemetry", "--silent")...)
	proc.DieWithParent(cmd) // an Azurite started for a test run never outlives it
	out, err := cmd.StdoutPipe()
	if err != nil {
		return "", nil, err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	stop = func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		n := 0
		for sc.Scan() { // keeps draining after ready, so Azurite never blocks on stdout
			if strings.Contains(sc.Text(), "successfully listening") {
				if n++; n == 3 {
					close(ready)
				}
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(30 * time.Second):
		stop()
		return "", nil, fmt.Errorf("azurite did not start within 30s")
	}
	return AzuriteConnectionString(ports[1], ports[0]), stop, nil
}

// DiskAzurite starts an Azurite of its own with a disk store in a temporary directory, for
// a benchmark or a test that needs one, and stops it (by PID) at cleanup. It skips without
// Azurite, except under CI=true, where it fails.
func DiskAzurite(tb testing.TB) string {
	tb.Helper()
	cs, stop, err := StartAzurite(tb.TempDir())
	if err != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("disk Azurite: %v", err)
		}
		tb.Skipf("no disk Azurite: %v (run `npm ci --prefix local`)", err)
	}
	tb.Cleanup(stop)
	return cs
}

// AzuriteConnectionString is the well-known Azurite account on the given loopback ports.
func AzuriteConnectionString(queuePort, blobPort int) string {
	return fmt.Sprintf("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"+
		"AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"+
		"BlobEndpoint=http://127.0.0.1:%d/devstoreaccount1;QueueEndpoint=http://127.0.0.1:%d/devstoreaccount1;", blobPort, queuePort)
}
