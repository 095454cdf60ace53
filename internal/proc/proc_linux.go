// Package proc holds what nightshift's process supervisors (the local host, `nightshift
// dev`, the test environment) need from the OS to leave no orphans behind.
package proc

import (
	"os/exec"
	"syscall"
)

// DieWithParent makes the child started by cmd get SIGKILL when its parent dies, however
// the parent dies (Linux's parent-death signal). Call it before cmd.Start; it keeps the
// other SysProcAttr fields. The signal follows the OS thread that started the child, and
// Go only ends threads of goroutines that exit while locked to one, which nightshift's
// supervisors never do.
func DieWithParent(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
}
