//go:build !linux

package testenv

import "os/exec"

// dieWithParent has no portable equivalent of Linux's parent-death signal; elsewhere the
// Azurite started for a test process is left to exit with its process group.
func dieWithParent(cmd *exec.Cmd) {}
