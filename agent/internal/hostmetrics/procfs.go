package hostmetrics

import (
	"bytes"
	"fmt"
	"strconv"
)

// The parsers below read the kernel's text formats (proc(5)). Each takes
// the whole file, returns numbers only (never a slice of the input, which
// is a reused buffer) and names the file, line and field it could not read.

// cpuTimes are the aggregate CPU counters of /proc/stat's "cpu" line, in
// clock ticks since boot.
type cpuTimes struct {
	// total is every state's time. Guest time is already counted in user
	// and nice, so it is not added again.
	total uint64
	// idle is idle plus iowait: a CPU waiting for I/O could run other work.
	idle uint64
}

// cpuStatFields names the counters of a "cpu" line in their order. The
// first seven exist since Linux 2.6; steal, guest and guest_nice came later
// and are optional.
var cpuStatFields = [...]string{"user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal", "guest", "guest_nice"}

const (
	cpuRequiredFields = 7
	cpuIdleField      = 3
	cpuIowaitField    = 4
	cpuGuestField     = 8 // guest and guest_nice are counted in user and nice
)

// parseProcStat reads the aggregate CPU times and counts the online CPUs
// (the "cpuN" lines) of /proc/stat.
func parseProcStat(file string, data []byte) (cpuTimes, int, error) {
	var times cpuTimes
	found, count := false, 0
	for lineNo, rest := 1, data; len(rest) > 0; lineNo++ {
		var line []byte
		line, rest = cutLine(rest)
		name, counters, _ := bytes.Cut(line, []byte{' '})
		if !bytes.HasPrefix(name, []byte("cpu")) {
			continue
		}
		if len(name) > 3 {
			if name[3] >= '0' && name[3] <= '9' {
				count++
			}
			continue
		}
		t, err := parseCPULine(counters)
		if err != nil {
			return cpuTimes{}, 0, fmt.Errorf("%s: line %d (cpu): %w", file, lineNo, err)
		}
		times, found = t, true
	}
	switch {
	case !found:
		return cpuTimes{}, 0, fmt.Errorf("%s: no aggregate \"cpu\" line", file)
	case count == 0:
		return cpuTimes{}, 0, fmt.Errorf("%s: no per-CPU \"cpuN\" line", file)
	}
	return times, count, nil
}

// parseCPULine sums the counters that follow "cpu".
func parseCPULine(counters []byte) (cpuTimes, error) {
	var t cpuTimes
	i := 0
	for field := range bytes.FieldsSeq(counters) {
		if i == len(cpuStatFields) {
			break // columns a later kernel may add
		}
		v, err := strconv.ParseUint(string(field), 10, 64)
		if err != nil {
			return cpuTimes{}, fmt.Errorf("field %s: %q is not a tick count", cpuStatFields[i], field)
		}
		if i < cpuGuestField {
			t.total += v
		}
		if i == cpuIdleField || i == cpuIowaitField {
			t.idle += v
		}
		i++
	}
	if i < cpuRequiredFields {
		return cpuTimes{}, fmt.Errorf("%d counters, want at least %d (%s to %s)",
			i, cpuRequiredFields, cpuStatFields[0], cpuStatFields[cpuRequiredFields-1])
	}
	return t, nil
}

// busyPercent is the share of the time between two readings that the CPUs
// were neither idle nor waiting for I/O. iowait may go backwards on Linux,
// so the result is clamped to 0–100; without elapsed ticks it is 0.
func busyPercent(prev, cur cpuTimes) float64 {
	if cur.total <= prev.total {
		return 0
	}
	elapsed := float64(cur.total - prev.total)
	idle := float64(cur.idle) - float64(prev.idle)
	busy := (elapsed - idle) / elapsed * 100
	return min(100, max(0, busy))
}

// parseMeminfo reads /proc/meminfo. Available memory is MemAvailable, the
// kernel's own estimate (Linux 3.14 on); older kernels get the usual
// approximation MemFree + Cached + SReclaimable.
func parseMeminfo(file string, data []byte) (MemoryReading, error) {
	const (
		total = iota
		available
		free
		cached
		reclaimable
		nFields
	)
	names := [nFields]string{"MemTotal", "MemAvailable", "MemFree", "Cached", "SReclaimable"}
	var values [nFields]uint64
	var seen [nFields]bool
	for lineNo, rest := 1, data; len(rest) > 0; lineNo++ {
		var line []byte
		line, rest = cutLine(rest)
		key, value, ok := bytes.Cut(line, []byte{':'})
		if !ok {
			continue
		}
		i := indexOf(names[:], key)
		if i < 0 {
			continue
		}
		kb, err := parseKB(value)
		if err != nil {
			return MemoryReading{}, fmt.Errorf("%s: line %d (%s): %w", file, lineNo, key, err)
		}
		values[i], seen[i] = kb*1024, true
	}
	if !seen[total] || values[total] == 0 {
		return MemoryReading{}, fmt.Errorf("%s: no MemTotal, or it is 0", file)
	}
	avail := values[available]
	if !seen[available] {
		if !seen[free] {
			return MemoryReading{}, fmt.Errorf("%s: neither MemAvailable nor MemFree", file)
		}
		avail = values[free] + values[cached] + values[reclaimable]
	}
	used := values[total] - min(avail, values[total])
	return MemoryReading{
		TotalBytes:  values[total],
		UsedBytes:   used,
		UsedPercent: float64(used) / float64(values[total]) * 100,
	}, nil
}

// parseKB reads a meminfo value: "   16318484 kB".
func parseKB(value []byte) (uint64, error) {
	number, unit, _ := bytes.Cut(bytes.TrimSpace(value), []byte{' '})
	if u := bytes.TrimSpace(unit); !bytes.Equal(u, []byte("kB")) {
		return 0, fmt.Errorf("unit %q, want kB", u)
	}
	kb, err := strconv.ParseUint(string(number), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a number of kB", number)
	}
	return kb, nil
}

// parseLoadavg reads the first three fields of /proc/loadavg:
// "0.52 0.58 0.59 1/1234 5678".
func parseLoadavg(file string, data []byte) (LoadAverage, error) {
	names := [...]string{"1-minute", "5-minute", "15-minute"}
	var loads [len(names)]float64
	i := 0
	for field := range bytes.FieldsSeq(data) {
		if i == len(loads) {
			break
		}
		v, err := strconv.ParseFloat(string(field), 64)
		if err != nil || v < 0 {
			return LoadAverage{}, fmt.Errorf("%s: %s load %q is not a non-negative number", file, names[i], field)
		}
		loads[i] = v
		i++
	}
	if i < len(loads) {
		return LoadAverage{}, fmt.Errorf("%s: %d fields, want at least 3 load averages", file, i)
	}
	return LoadAverage{Load1: loads[0], Load5: loads[1], Load15: loads[2]}, nil
}

// parseUptime reads the first field of /proc/uptime, seconds since boot
// ("350735.47 234388.90"), and truncates it to whole seconds.
func parseUptime(file string, data []byte) (uint64, error) {
	first, _, _ := bytes.Cut(bytes.TrimSpace(data), []byte{' '})
	v, err := strconv.ParseFloat(string(first), 64)
	if err != nil || v < 0 || v >= 1<<63 {
		return 0, fmt.Errorf("%s: uptime %q is not a non-negative number of seconds", file, first)
	}
	return uint64(v), nil
}

// cutLine splits data at its first newline.
func cutLine(data []byte) (line, rest []byte) {
	line, rest, _ = bytes.Cut(data, []byte{'\n'})
	return line, rest
}

// indexOf is the index of key in names, or -1.
func indexOf(names []string, key []byte) int {
	for i, n := range names {
		if string(key) == n {
			return i
		}
	}
	return -1
}
