//go:build unix

package funchost

import (
	"os/exec"
	"syscall"

	"github.com/nightshift-jobs/nightshift/internal/proc"
)

// setProcAttrs puts the handler in its own process group, so the host can stop it and
// anything it started by the group id, and nothing else; and makes it die with the host
// (on Linux), so a killed host leaves no handler behind.
func setProcAttrs(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	proc.DieWithParent(cmd)
}

func killProcess(cmd *exec.Cmd) {
	if cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
}
