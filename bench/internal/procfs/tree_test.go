package procfs

import (
	"os"
	"os/exec"
	"testing"
)

func TestParseProcStat(t *testing.T) {
	line := "4242 (postgres: (x) ) S 17 4242 4242 0 -1 4194560 1234 0 0 0 731 219 40 2 20 0 12 0 100 1000000 2500\n"
	st, err := ParseProcStat(line)
	if err != nil {
		t.Fatal(err)
	}
	want := ProcStat{PPID: 17, UTime: 731, STime: 219, CUTime: 40, CSTime: 2}
	if st != want {
		t.Errorf("ParseProcStat = %+v, want %+v", st, want)
	}
	for _, bad := range []string{"", "4242 cp S 1", "4242 (cp) S 1 2 3", "4242 (cp) S x 4242 4242 0 -1 4194560 1234 0 0 0 1 2 3 4",
		"4242 (cp) S 1 4242 4242 0 -1 4194560 1234 0 0 0 1 2 3 y"} {
		if _, err := ParseProcStat(bad); err == nil {
			t.Errorf("ParseProcStat(%q) succeeded, want an error", bad)
		}
	}
}

func TestTreeCPUCountsLiveChildren(t *testing.T) {
	// A child that spins for a while: the test process's tree CPU must
	// grow by at least the child's own.
	cmd := exec.Command("sh", "-c", "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; sleep 5")
	if err := cmd.Start(); err != nil {
		t.Skipf("cannot start sh: %v", err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	self := os.Getpid()
	before, err := TreeCPU(self)
	if err != nil {
		t.Fatal(err)
	}
	own, err := Read(self)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		st, err := readProcStat(cmd.Process.Pid)
		if err == nil && st.UTime+st.STime > 0 {
			break
		}
		exec.Command("sleep", "0.05").Run()
	}
	child, err := readProcStat(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	after, err := TreeCPU(self)
	if err != nil {
		t.Fatal(err)
	}
	if after.CPU < own.CPU || after.CPU < before.CPU {
		t.Errorf("TreeCPU = %v after %v, own CPU %v: went down", after.CPU, before.CPU, own.CPU)
	}
	if childCPU := TicksToDuration(child.UTime + child.STime); after.CPU-own.CPU < childCPU {
		t.Errorf("TreeCPU %v less own %v = %v, below the live child's %v", after.CPU, own.CPU, after.CPU-own.CPU, childCPU)
	}
}
