package proc

import (
	"context"
	"os"
	"strconv"
	"time"
)

// EnvParentPID is the environment variable a supervisor (the local host) sets on a child
// it starts: its own process id, for the logs. A child that sees it watches its parent
// (WatchParent).
const EnvParentPID = "NIGHTSHIFT_PARENT_PID"

// WatchParent is the watchdog for systems without a parent-death signal (and a second
// guard on Linux): when getenv(EnvParentPID) names a process id, it checks every interval
// whether this process's parent is still the one it had at the call, and calls gone once
// it is not (a Unix child whose parent dies is handed to another process, so its parent id
// changes). Comparing with the parent at the start, not with the named id, keeps a handler
// started through a wrapper script alive while the wrapper lives. It returns when ctx ends
// or after gone, and does nothing when the variable is unset or not a process id.
func WatchParent(ctx context.Context, getenv func(string) string, every time.Duration, gone func()) {
	if pid, err := strconv.Atoi(getenv(EnvParentPID)); err != nil || pid <= 0 {
		return
	}
	watchParent(ctx, os.Getppid(), os.Getppid, every, gone)
}

func watchParent(ctx context.Context, want int, ppid func() int, every time.Duration, gone func()) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if ppid() != want {
			gone()
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
