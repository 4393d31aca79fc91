//go:build !linux

package docker

import "os/exec"

// dieWithParent is Linux-only; elsewhere TestMain's cleanup must run.
func dieWithParent(*exec.Cmd) {}
