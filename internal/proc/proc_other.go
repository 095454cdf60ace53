//go:build !linux

// Package proc holds what nightshift's process supervisors (the local host, `nightshift
// dev`, the test environment) need from the OS to leave no orphans behind.
package proc

import "os/exec"

// DieWithParent has no portable equivalent of Linux's parent-death signal: elsewhere a
// child outlives a parent that is killed (a stopped parent still stops it).
func DieWithParent(cmd *exec.Cmd) {}
