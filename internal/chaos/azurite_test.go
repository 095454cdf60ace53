//go:build linux

package chaos

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nightshift-jobs/nightshift/internal/proc"
	"github.com/nightshift-jobs/nightshift/internal/testenv"
)

// azurite is the chaos test's own Azurite: a disk store in a directory of the test, on
// loopback ports that stay the same across a stop and a start, so the clients, the host
// and the handler keep their settings while it is down.
type azurite struct {
	dir              string
	blob, queue, tbl int
	cmd              *exec.Cmd
	exited           chan struct{}
	starts           int
}

// newAzurite starts an Azurite of the test's own and stops it (by PID) at cleanup. Without
// the pinned Azurite it skips, except under CI=true, where it fails.
func newAzurite(t *testing.T) *azurite {
	t.Helper()
	if _, err := os.Stat(testenv.AzuriteBinary()); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("Azurite is required under CI=true: %v", err)
		}
		t.Skipf("no Azurite: %v (run `npm ci --prefix local`)", err)
	}
	a := &azurite{dir: t.TempDir()}
	ports, err := stablePorts(3)
	if err != nil {
		t.Fatal(err)
	}
	a.blob, a.queue, a.tbl = ports[0], ports[1], ports[2]
	if err := a.start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := a.stop(); err != nil {
			t.Error(err)
		}
	})
	return a
}

// connectionString is the well-known Azurite account on a's ports.
func (a *azurite) connectionString() string { return testenv.AzuriteConnectionString(a.queue, a.blob) }

// stablePorts returns n free loopback ports below the kernel's ephemeral range: a port in
// that range could be handed to an outgoing connection (or a handler's listener, which
// binds 127.0.0.1:0) while Azurite is down, and Azurite could then not listen on it again.
func stablePorts(n int) ([]int, error) {
	lo := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if v, err := strconv.Atoi(f[0]); err == nil {
				lo = v
			}
		}
	}
	const floor = 20000
	if lo <= floor+1000 {
		return nil, fmt.Errorf("the ephemeral port range starts at %d: no room below it for Azurite's fixed ports", lo)
	}
	var out []int
	for tries := 0; len(out) < n && tries < 1000; tries++ {
		p := floor + rand.IntN(lo-floor)
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		l.Close()
		if !containsInt(out, p) {
			out = append(out, p)
		}
	}
	if len(out) < n {
		return nil, errors.New("no free ports below the ephemeral range")
	}
	return out, nil
}

func containsInt(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// start runs Azurite on a's ports and location and waits until both services accept
// connections.
func (a *azurite) start() error {
	a.starts++
	logf, err := os.OpenFile(filepath.Join(a.dir, "azurite.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(testenv.AzuriteBinary(), "--location", filepath.Join(a.dir, "data"),
		"--blobHost", "127.0.0.1", "--blobPort", strconv.Itoa(a.blob),
		"--queueHost", "127.0.0.1", "--queuePort", strconv.Itoa(a.queue),
		"--tableHost", "127.0.0.1", "--tablePort", strconv.Itoa(a.tbl),
		"--skipApiVersionCheck", "--disableTelemetry", "--silent")
	cmd.Stdout, cmd.Stderr = logf, logf
	proc.DieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start Azurite: %w", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(exited) }()
	a.cmd, a.exited = cmd, exited
	for deadline := time.Now().Add(60 * time.Second); ; {
		if listening(a.queue) && listening(a.blob) {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("azurite exited during start-up (start %d): %s", a.starts, a.logTail())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-exited
			return fmt.Errorf("azurite did not listen within 60 s (start %d): %s", a.starts, a.logTail())
		}
	}
}

// stop ends Azurite gracefully, by its PID: SIGTERM makes it close its services and save
// its disk store. A SIGKILL would lose the writes of its last few seconds (its metadata
// store saves every 5 s), an emulator limit the test must not blame on nightshift; so a
// stop that does not end within a minute is an error, and only then is it killed.
func (a *azurite) stop() error {
	if a.cmd == nil {
		return nil
	}
	cmd, exited := a.cmd, a.exited
	a.cmd = nil
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return fmt.Errorf("stop Azurite: %w", err)
	}
	select {
	case <-exited:
		return nil
	case <-time.After(time.Minute):
		_ = cmd.Process.Kill()
		<-exited
		return fmt.Errorf("azurite (pid %d) did not exit within a minute of SIGTERM and was killed: %s", cmd.Process.Pid, a.logTail())
	}
}

func (a *azurite) logTail() string {
	b, _ := os.ReadFile(filepath.Join(a.dir, "azurite.log"))
	return string(b[max(0, len(b)-2000):])
}

// listening reports whether something accepts connections on the loopback port.
func listening(port int) bool {
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}
