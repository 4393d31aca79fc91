package harness

import "syscall"

// sysProcAttr puts a child in its own process group, so that a Ctrl-C in
// the terminal reaches only the benchmark, which then stops its children
// in order; and has the kernel kill the child if the benchmark dies
// without cleaning up (SIGKILL, a crash). Pdeathsig follows the thread
// that started the child; Go ends threads only when a goroutine that
// locked one exits, which this program never does.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
