package hostmetrics

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
)

// ProcRootEnv names the environment variable that points the agent at the
// host's /proc when it runs in a container (e.g. HOST_PROC=/host/proc with
// the host's /proc mounted there read-only), the variable gopsutil used.
const ProcRootEnv = "HOST_PROC"

// DefaultProcRoot is where the kernel's proc filesystem is mounted.
const DefaultProcRoot = "/proc"

// maxProcFile bounds one read of a proc file. /proc/stat is the largest
// the source reads: its "intr" line grows with the interrupt count, a few
// tens of KiB on large hosts.
const maxProcFile = 4 << 20

// procSource is the default Source: it reads /proc/stat, /proc/meminfo,
// /proc/loadavg and /proc/uptime under root, and statfs(2) for disks.
// It keeps the previous CPU reading to compute the busy share between
// heartbeats, and one buffer for the files, so a heartbeat reads four
// small files and allocates little.
type procSource struct {
	root string

	mu      sync.Mutex
	buf     []byte
	prevCPU cpuTimes
}

// newProcSource reads the CPU counters once, so that the first heartbeat
// reports the CPU's use since the agent started rather than since boot.
// If that fails, the first reading fails the same way and is logged then.
func newProcSource(root string) *procSource {
	s := &procSource{root: root}
	if times, _, err := s.readCPU(); err == nil {
		s.prevCPU = times
	}
	return s
}

// procRootFromEnv is $HOST_PROC, or /proc when it is not set.
func procRootFromEnv() string {
	if root := os.Getenv(ProcRootEnv); root != "" {
		return root
	}
	return DefaultProcRoot
}

func (s *procSource) CPU(context.Context) (CPUReading, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	times, count, err := s.readCPU()
	if err != nil {
		return CPUReading{}, err
	}
	busy := busyPercent(s.prevCPU, times)
	s.prevCPU = times
	return CPUReading{BusyPercent: busy, Count: count}, nil
}

// readCPU reads /proc/stat; s.mu must be held, or s not yet shared.
func (s *procSource) readCPU() (cpuTimes, int, error) {
	file := filepath.Join(s.root, "stat")
	data, err := s.read(file)
	if err != nil {
		return cpuTimes{}, 0, err
	}
	return parseProcStat(file, data)
}

func (s *procSource) Memory(context.Context) (MemoryReading, error) {
	return readParsed(s, "meminfo", parseMeminfo)
}

func (s *procSource) Load(context.Context) (LoadAverage, error) {
	return readParsed(s, "loadavg", parseLoadavg)
}

func (s *procSource) Uptime(context.Context) (uint64, error) {
	return readParsed(s, "uptime", parseUptime)
}

func (s *procSource) Disk(_ context.Context, path string) (DiskUsage, error) {
	return statfsUsage(path)
}

// readParsed reads the proc file name and parses it.
func readParsed[T any](s *procSource, name string, parse func(file string, data []byte) (T, error)) (T, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	file := filepath.Join(s.root, name)
	data, err := s.read(file)
	if err != nil {
		var zero T
		return zero, err
	}
	return parse(file, data)
}

// read returns the content of file in s.buf, which the next read
// overwrites; s.mu must be held.
func (s *procSource) read(file string) ([]byte, error) {
	if s.buf == nil {
		s.buf = make([]byte, 0, 4096)
	}
	buf, err := readFile(file, s.buf[:0])
	if err != nil {
		return nil, err
	}
	s.buf = buf
	return buf, nil
}

// growFull makes room in a full buffer, up to maxProcFile. Proc files
// report a size of 0, so the buffer grows until a read reaches the end.
func growFull(file string, buf []byte) ([]byte, error) {
	if len(buf) < cap(buf) {
		return buf, nil
	}
	if cap(buf) >= maxProcFile {
		return nil, fmt.Errorf("%s: larger than %d bytes", file, maxProcFile)
	}
	return append(buf, 0)[:len(buf)], nil
}
