package procfs

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
)

// ClockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat:
// sysconf(_SC_CLK_TCK). The kernel fixes it at 100 on every architecture
// Go runs on (it is part of the user-space ABI, independent of CONFIG_HZ).
const ClockTicks = 100

// Sample is one reading of a process.
type Sample struct {
	At time.Time
	// RSS is VmRSS: resident memory in bytes.
	RSS int64
	// CPU is user plus system time since the process started.
	CPU time.Duration
}

// CPUCores is the average number of cores the process used between two
// samples: CPU time over wall time.
func CPUCores(from, to Sample) float64 {
	wall := to.At.Sub(from.At)
	if wall <= 0 {
		return 0
	}
	return float64(to.CPU-from.CPU) / float64(wall)
}

// Read samples process pid.
func Read(pid int) (Sample, error) {
	s := Sample{At: time.Now()}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, err
	}
	utime, stime, err := ParseStat(string(stat))
	if err != nil {
		return s, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	s.CPU = TicksToDuration(utime + stime)
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	defer f.Close()
	if s.RSS, err = ParseStatusRSS(f); err != nil {
		return s, fmt.Errorf("/proc/%d/status: %w", pid, err)
	}
	return s, nil
}

// TicksToDuration converts clock ticks to a duration.
func TicksToDuration(ticks uint64) time.Duration {
	return time.Duration(ticks) * (time.Second / ClockTicks)
}

// ParseStat returns utime and stime (fields 14 and 15, in clock ticks)
// from the contents of /proc/<pid>/stat. The command name (field 2) is in
// parentheses and may itself hold spaces and parentheses, so fields are
// counted from the last ')'.
func ParseStat(s string) (utime, stime uint64, err error) {
	end := strings.LastIndexByte(s, ')')
	if end < 0 {
		return 0, 0, errors.New("no ')' after the command name")
	}
	// After ") " come field 3 (state) onwards: utime is field 14, the
	// 12th of these, and stime the 13th.
	fields := strings.Fields(s[end+1:])
	if len(fields) < 13 {
		return 0, 0, fmt.Errorf("%d fields after the command name, want at least 13", len(fields))
	}
	if utime, err = strconv.ParseUint(fields[11], 10, 64); err != nil {
		return 0, 0, fmt.Errorf("utime %q: %w", fields[11], err)
	}
	if stime, err = strconv.ParseUint(fields[12], 10, 64); err != nil {
		return 0, 0, fmt.Errorf("stime %q: %w", fields[12], err)
	}
	return utime, stime, nil
}

// ParseStatusRSS returns VmRSS in bytes from /proc/<pid>/status.
func ParseStatusRSS(r io.Reader) (int64, error) {
	v, err := kibField(r, "VmRSS:")
	if err != nil {
		return 0, err
	}
	return v * 1024, nil
}

// kibField finds a "Name:   1234 kB" line and returns its number (KiB).
func kibField(r io.Reader, name string) (int64, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), name)
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("%s line %q is not \"<number> kB\"", name, sc.Text())
		}
		v, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s %q: %w", name, f[0], err)
		}
		return v, nil
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("no %s line", name)
}

// OpenFileLimit returns the soft RLIMIT_NOFILE of process pid (what the
// process may open now; Go programs raise it to the hard limit at start).
func OpenFileLimit(pid int) (int, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return ParseOpenFileLimit(f)
}

// ParseOpenFileLimit reads the soft "Max open files" limit from
// /proc/<pid>/limits; -1 when it is unlimited.
func ParseOpenFileLimit(r io.Reader) (int, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "Max open files")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) < 1 {
			return 0, fmt.Errorf("Max open files line %q has no soft limit", sc.Text())
		}
		if f[0] == "unlimited" {
			return -1, nil
		}
		n, err := strconv.Atoi(f[0])
		if err != nil {
			return 0, fmt.Errorf("Max open files soft limit %q: %w", f[0], err)
		}
		return n, nil
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, errors.New("no Max open files line")
}

// LoadAverage returns the one-minute load average from /proc/loadavg:
// the machine is shared, and a figure measured under load says so.
func LoadAverage() (float64, error) {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0, err
	}
	return ParseLoadAvg(string(b))
}

// ParseLoadAvg reads the first field of /proc/loadavg.
func ParseLoadAvg(s string) (float64, error) {
	f := strings.Fields(s)
	if len(f) == 0 {
		return 0, errors.New("/proc/loadavg is empty")
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return 0, fmt.Errorf("/proc/loadavg: %q: %w", f[0], err)
	}
	return v, nil
}

// Machine describes the computer the benchmarks ran on.
type Machine struct {
	CPUModel string
	Cores    int
	// MemTotal is the RAM in bytes.
	MemTotal int64
}

// String is the machine as the results file shows it.
func (m Machine) String() string {
	return fmt.Sprintf("%s, %d cores, %.1f GiB", m.CPUModel, m.Cores, float64(m.MemTotal)/(1<<30))
}

// ReadMachine reads /proc/cpuinfo and /proc/meminfo.
func ReadMachine() (Machine, error) {
	var m Machine
	cpu, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return m, err
	}
	defer cpu.Close()
	if m.CPUModel, m.Cores, err = ParseCPUInfo(cpu); err != nil {
		return m, fmt.Errorf("/proc/cpuinfo: %w", err)
	}
	mem, err := os.Open("/proc/meminfo")
	if err != nil {
		return m, err
	}
	defer mem.Close()
	kib, err := kibField(mem, "MemTotal:")
	if err != nil {
		return m, fmt.Errorf("/proc/meminfo: %w", err)
	}
	m.MemTotal = kib * 1024
	return m, nil
}

// ParseCPUInfo returns the first "model name" and the number of
// "processor" entries (logical CPUs) of /proc/cpuinfo. Architectures
// without a model name (some ARM kernels) report "unknown CPU".
func ParseCPUInfo(r io.Reader) (model string, cores int, err error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		key, value, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		switch strings.TrimSpace(key) {
		case "processor":
			cores++
		case "model name":
			if model == "" {
				model = strings.TrimSpace(value)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return "", 0, err
	}
	if cores == 0 {
		return "", 0, errors.New("no processor entries")
	}
	if model == "" {
		model = "unknown CPU"
	}
	return model, cores, nil
}
