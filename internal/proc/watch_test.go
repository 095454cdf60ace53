package proc

import (
	"context"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

func TestWatchParentCallsGoneWhenTheParentChanges(t *testing.T) {
	var parent atomic.Int64
	parent.Store(42)
	done := make(chan struct{})
	calls := 0
	go func() {
		defer close(done)
		watchParent(context.Background(), 42, func() int { return int(parent.Load()) }, time.Millisecond, func() { calls++ })
	}()
	parent.Store(1) // reparented: the supervisor died
	<-done
	if calls != 1 {
		t.Fatalf("gone called %d times, want 1", calls)
	}
}

func TestWatchParentReturnsWithItsContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		WatchParent(ctx, func(string) string { return strconv.Itoa(os.Getppid()) }, time.Millisecond, func() { t.Error("gone called while the parent lives") })
	}()
	cancel()
	<-done
}

func TestWatchParentIgnoresUnsetOrBadValues(t *testing.T) {
	for _, v := range []string{"", "x", "0", "-3"} {
		WatchParent(context.Background(), func(string) string { return v }, time.Millisecond, func() { t.Errorf("%q: gone called", v) })
	}
}
