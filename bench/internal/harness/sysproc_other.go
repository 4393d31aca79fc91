//go:build !linux

package harness

import "syscall"

// sysProcAttr: the benchmarks read /proc and run on Linux only; elsewhere
// children get the defaults, so that the module still builds.
func sysProcAttr() *syscall.SysProcAttr { return nil }
