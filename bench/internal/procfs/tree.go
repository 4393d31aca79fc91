package procfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// ProcStat is what TreeCPU reads of /proc/<pid>/stat: the parent's PID,
// the process's own CPU and that of its children it has waited for (all
// in clock ticks).
type ProcStat struct {
	PPID                         int
	UTime, STime, CUTime, CSTime uint64
}

// ParseProcStat parses the contents of /proc/<pid>/stat: ppid (field 4),
// utime, stime, cutime, cstime (fields 14-17), counted from the last ')'
// like ParseStat.
func ParseProcStat(s string) (ProcStat, error) {
	var st ProcStat
	end := strings.LastIndexByte(s, ')')
	if end < 0 {
		return st, errors.New("no ')' after the command name")
	}
	fields := strings.Fields(s[end+1:])
	if len(fields) < 15 {
		return st, fmt.Errorf("%d fields after the command name, want at least 15", len(fields))
	}
	ppid, err := strconv.Atoi(fields[1])
	if err != nil {
		return st, fmt.Errorf("ppid %q: %w", fields[1], err)
	}
	st.PPID = ppid
	for i, dst := range []*uint64{&st.UTime, &st.STime, &st.CUTime, &st.CSTime} {
		if *dst, err = strconv.ParseUint(fields[11+i], 10, 64); err != nil {
			return st, fmt.Errorf("field %d %q: %w", 14+i, fields[11+i], err)
		}
	}
	return st, nil
}

// TreeCPU is the CPU time of process pid and of its children: its own,
// that of the children it has reaped, and that of its live children (a
// PostgreSQL server: the postmaster, its exited backends, and the
// backends and background processes running now). Grandchildren that are
// still running are not counted.
func TreeCPU(pid int) (Sample, error) {
	s := Sample{At: time.Now()}
	root, err := readProcStat(pid)
	if err != nil {
		return s, err
	}
	ticks := root.UTime + root.STime + root.CUTime + root.CSTime
	dirs, err := filepath.Glob("/proc/[0-9]*")
	if err != nil {
		return s, err
	}
	for _, d := range dirs {
		child, err := strconv.Atoi(filepath.Base(d))
		if err != nil || child == pid {
			continue
		}
		st, err := readProcStat(child)
		if err != nil || st.PPID != pid {
			continue // gone since the listing, or not a child
		}
		ticks += st.UTime + st.STime + st.CUTime + st.CSTime
	}
	s.CPU = TicksToDuration(ticks)
	return s, nil
}

func readProcStat(pid int) (ProcStat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ProcStat{}, err
	}
	st, err := ParseProcStat(string(b))
	if err != nil {
		return st, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return st, nil
}
