//go:build unix

package funchost

import (
	"os/exec"
	"syscall"
)

// setProcAttrs puts the handler in its own process group, so the host can stop it and
// anything it started by the group id, and nothing else.
func setProcAttrs(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

func killProcess(cmd *exec.Cmd) {
	if cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
}
