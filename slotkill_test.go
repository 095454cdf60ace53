package nightshift

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nightshift-jobs/nightshift/internal/proc"
	"github.com/nightshift-jobs/nightshift/internal/testenv"
	"github.com/nightshift-jobs/nightshift/storage"
)

// envSlotHolder makes the test binary, re-executed by TestConcurrencySlotOfAKilledProcess,
// the process that holds the slots.
const envSlotHolder = "NIGHTSHIFT_TEST_SLOT_HOLDER"

const killedKind, killedKey, killedSlots = "test.flow.killed", "k", 3

// TestSlotHolderProcess is the child of TestConcurrencySlotOfAKilledProcess: it takes
// every slot of its key, says so on stdout, and renews them until it is killed. Run
// alone, it does nothing.
func TestSlotHolderProcess(t *testing.T) {
	if os.Getenv(envSlotHolder) == "" {
		return
	}
	c, err := storage.FromEnv(os.Getenv, nil)
	if err != nil {
		t.Fatal(err)
	}
	sl := &slots{s: c.Store(), container: c.Layout.UniqueContainer(), log: slog.New(slog.NewTextHandler(os.Stderr, nil))}
	for i := range killedSlots {
		if h, err := sl.acquire(context.Background(), killedKind, killedKey, killedSlots, DefaultSlotLease); err != nil || h == nil {
			t.Fatalf("slot %d: %v %v", i, h, err)
		}
	}
	os.Stdout.WriteString("held\n")
	time.Sleep(time.Hour) // renewing, until the parent kills this process
}

// A separate process holding every concurrency slot of a key, renewing them, is
// SIGKILLed: the slots stay held right after the kill (renewed leases), and another
// process gets one within the documented bound, SlotLease after the last renewal, so at
// most SlotLease after the kill (Azurite).
func TestConcurrencySlotOfAKilledProcess(t *testing.T) {
	t.Parallel()
	getenv := testenv.Env(t)
	c, err := storage.FromEnv(getenv, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := c.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestSlotHolderProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), envSlotHolder+"=1",
		storage.SettingStorage+"="+getenv(storage.SettingStorage), storage.SettingNamePrefix+"="+getenv(storage.SettingNamePrefix))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	proc.DieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	t.Cleanup(func() {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		_ = cmd.Wait()
	})
	lines := bufio.NewScanner(out)
	if !lines.Scan() || strings.TrimSpace(lines.Text()) != "held" {
		t.Fatalf("the holder process said %q (%v)", lines.Text(), lines.Err())
	}
	go func() { _, _ = io.Copy(io.Discard, out) }()
	alive := &slots{s: c.Store(), container: c.Layout.UniqueContainer(), log: slog.New(slog.DiscardHandler)}
	// Past a renewal (every SlotLease/3), the slots are still the holder's.
	time.Sleep(DefaultSlotLease/3 + 2*time.Second)
	if h, err := alive.acquire(ctx, killedKind, killedKey, killedSlots, DefaultSlotLease); err != nil || h != nil {
		t.Fatalf("a slot of a live holder was free: %v %v", h, err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	_ = cmd.Wait()
	if h, err := alive.acquire(ctx, killedKind, killedKey, killedSlots, DefaultSlotLease); err != nil || h != nil {
		t.Fatalf("a slot was free right after its holder was killed (its renewed lease should hold): %v %v", h, err)
	}
	var got *heldSlot
	// The bound: SlotLease after the last renewal, which is before the kill, plus a
	// renewal interval of margin for the polling on a loaded machine.
	testenv.WaitFor(t, DefaultSlotLease+DefaultSlotLease/3, "a slot of the killed holder", func() bool {
		h, err := alive.acquire(ctx, killedKind, killedKey, killedSlots, DefaultSlotLease)
		if err != nil {
			t.Fatal(err)
		}
		got = h
		return h != nil
	})
	t.Logf("a slot of the SIGKILLed process (pid %d) was free again %s after the kill (bound: SlotLease %s + %s)", pid, time.Since(killed).Round(100*time.Millisecond), DefaultSlotLease, DefaultSlotLease/3)
	got.release()
}
