package pgtest

import (
	"os/exec"
	"syscall"
)

// dieWithParent kills the child when the test process dies, so that a
// crashed or killed test leaves no server behind.
func dieWithParent(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
}
