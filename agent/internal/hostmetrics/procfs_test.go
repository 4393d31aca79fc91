package hostmetrics

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// readFixture returns testdata/<dir>/<name> and the path that the parsers
// are given to name in their errors.
func readFixture(t *testing.T, dir, name string) (string, []byte) {
	t.Helper()
	path := filepath.Join("testdata", dir, name)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return path, data
}

// checkErr fails unless err is nil when wantErr is "", or names the file
// and contains wantErr otherwise.
func checkErr(t *testing.T, file string, err error, wantErr string) {
	t.Helper()
	switch {
	case wantErr == "" && err != nil:
		t.Fatalf("unexpected error: %v", err)
	case wantErr != "" && err == nil:
		t.Fatalf("no error, want one containing %q", wantErr)
	case wantErr != "" && (!strings.Contains(err.Error(), wantErr) || !strings.Contains(err.Error(), file)):
		t.Fatalf("error %q, want one naming %s and containing %q", err, file, wantErr)
	}
}

// parserCase is one fixture of a parser that returns one value.
type parserCase[T comparable] struct {
	fixture string
	want    T
	wantErr string
}

// testParser runs parse on testdata/<dir>/<fixture> of each case.
func testParser[T comparable](t *testing.T, dir string, parse func(file string, data []byte) (T, error), tests []parserCase[T]) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.fixture, func(t *testing.T) {
			file, data := readFixture(t, dir, tt.fixture)
			got, err := parse(file, data)
			checkErr(t, file, err, tt.wantErr)
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestParseProcStat(t *testing.T) {
	tests := []struct {
		fixture   string
		want      cpuTimes
		wantCount int
		wantErr   string
	}{
		// total counts user to steal: guest time is already in user and nice.
		{fixture: "../proc/stat", want: cpuTimes{total: 20000, idle: 14500}, wantCount: 4},
		{fixture: "linux-2.6", want: cpuTimes{total: 1000, idle: 850}, wantCount: 1},
		{fixture: "extra-columns", want: cpuTimes{total: 1000, idle: 850}, wantCount: 2},
		{fixture: "too-few-counters", wantErr: "line 1 (cpu): 4 counters, want at least 7"},
		{fixture: "bad-counter", wantErr: `field system: "fifty" is not a tick count`},
		{fixture: "negative-counter", wantErr: `field user: "-100" is not a tick count`},
		{fixture: "no-aggregate", wantErr: `no aggregate "cpu" line`},
		{fixture: "no-per-cpu", wantErr: `no per-CPU "cpuN" line`},
		{fixture: "empty", wantErr: `no aggregate "cpu" line`},
	}
	for _, tt := range tests {
		t.Run(tt.fixture, func(t *testing.T) {
			file, data := readFixture(t, "stat", tt.fixture)
			got, count, err := parseProcStat(file, data)
			checkErr(t, file, err, tt.wantErr)
			if got != tt.want || count != tt.wantCount {
				t.Errorf("got %+v and %d CPUs, want %+v and %d", got, count, tt.want, tt.wantCount)
			}
		})
	}
}

func TestBusyPercent(t *testing.T) {
	tests := []struct {
		name      string
		prev, cur cpuTimes
		want      float64
	}{
		{"a quarter busy", cpuTimes{total: 1000, idle: 800}, cpuTimes{total: 2000, idle: 1550}, 25},
		{"all idle", cpuTimes{total: 1000, idle: 800}, cpuTimes{total: 2000, idle: 1800}, 0},
		{"all busy", cpuTimes{total: 1000, idle: 800}, cpuTimes{total: 2000, idle: 800}, 100},
		{"since boot", cpuTimes{}, cpuTimes{total: 1000, idle: 900}, 10},
		{"no tick elapsed", cpuTimes{total: 1000, idle: 800}, cpuTimes{total: 1000, idle: 800}, 0},
		{"counters went back", cpuTimes{total: 2000, idle: 800}, cpuTimes{total: 1000, idle: 500}, 0},
		{"iowait went back", cpuTimes{total: 1000, idle: 800}, cpuTimes{total: 1100, idle: 790}, 100},
		{"idle beyond the elapsed time", cpuTimes{total: 1000, idle: 800}, cpuTimes{total: 1100, idle: 950}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := busyPercent(tt.prev, tt.cur); got != tt.want {
				t.Errorf("busyPercent = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestParseMeminfo(t *testing.T) {
	testParser(t, "meminfo", parseMeminfo, []parserCase[MemoryReading]{
		{fixture: "../proc/meminfo", want: MemoryReading{TotalBytes: 16000000 * 1024, UsedBytes: 12000000 * 1024, UsedPercent: 75}},
		// Without MemAvailable: free 1000000 + cached 2000000 + reclaimable 500000 kB.
		{fixture: "no-memavailable", want: MemoryReading{TotalBytes: 8000000 * 1024, UsedBytes: 4500000 * 1024, UsedPercent: 56.25}},
		{fixture: "available-above-total", want: MemoryReading{TotalBytes: 8000000 * 1024}},
		{fixture: "bad-unit", wantErr: `line 1 (MemTotal): unit "MB", want kB`},
		{fixture: "bad-number", wantErr: `line 3 (MemAvailable): "lots" is not a number of kB`},
		{fixture: "no-memtotal", wantErr: "no MemTotal"},
		{fixture: "zero-total", wantErr: "no MemTotal, or it is 0"},
		{fixture: "no-available-no-free", wantErr: "neither MemAvailable nor MemFree"},
	})
}

func TestParseLoadavg(t *testing.T) {
	testParser(t, "loadavg", parseLoadavg, []parserCase[LoadAverage]{
		{fixture: "../proc/loadavg", want: LoadAverage{Load1: 1.86, Load5: 2.36, Load15: 1.43}},
		{fixture: "idle", want: LoadAverage{Load1: 0, Load5: 0.01, Load15: 0.05}},
		{fixture: "too-few-fields", wantErr: "2 fields, want at least 3"},
		{fixture: "negative", wantErr: `5-minute load "-0.58" is not a non-negative number`},
		{fixture: "not-a-number", wantErr: `1-minute load "high" is not a non-negative number`},
	})
}

func TestParseUptime(t *testing.T) {
	testParser(t, "uptime", parseUptime, []parserCase[uint64]{
		{fixture: "../proc/uptime", want: 1247},
		{fixture: "fraction", want: 350735},
		{fixture: "no-idle-field", want: 42},
		{fixture: "empty", wantErr: `uptime "" is not`},
		{fixture: "not-a-number", wantErr: `uptime "up" is not`},
		{fixture: "negative", wantErr: `uptime "-1.00" is not`},
	})
}

func TestDiskUsage(t *testing.T) {
	tests := []struct {
		name                       string
		bsize, blocks, free, avail uint64
		want                       DiskUsage
	}{
		// 5 % reserved for root: 50 used of 95 usable.
		{"reserved blocks", 4096, 100, 50, 45, DiskUsage{TotalBytes: 409600, UsedBytes: 204800, UsedPercent: 50.0 / 95 * 100}},
		{"full for users", 4096, 100, 5, 0, DiskUsage{TotalBytes: 409600, UsedBytes: 389120, UsedPercent: 100}},
		{"empty filesystem", 4096, 0, 0, 0, DiskUsage{}},
		{"free above blocks", 4096, 10, 20, 20, DiskUsage{TotalBytes: 40960}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := diskUsage(tt.bsize, tt.blocks, tt.free, tt.avail); got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestProcSourceReadsItsRoot runs the default source over a copy of
// testdata/proc, as an agent with HOST_PROC pointing at the host's /proc.
func TestProcSourceReadsItsRoot(t *testing.T) {
	root := t.TempDir()
	for _, name := range []string{"stat", "meminfo", "loadavg", "uptime"} {
		data, err := os.ReadFile(filepath.Join("testdata", "proc", name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	src := newProcSource(root)

	// The baseline is taken at construction: nothing elapsed since.
	if cpu, err := src.CPU(ctx); err != nil || cpu != (CPUReading{BusyPercent: 0, Count: 4}) {
		t.Fatalf("first CPU reading = %+v, %v; want 0 %% of 4 CPUs", cpu, err)
	}
	// 1000 ticks later, 600 of them idle or waiting for I/O.
	next := "cpu  4300 100 1100 14500 600 0 300 100 50 0\ncpu0 1 0 0 0 0 0 0\ncpu1 1 0 0 0 0 0 0\n"
	if err := os.WriteFile(filepath.Join(root, "stat"), []byte(next), 0o600); err != nil {
		t.Fatal(err)
	}
	if cpu, err := src.CPU(ctx); err != nil || math.Abs(cpu.BusyPercent-40) > 1e-9 || cpu.Count != 2 {
		t.Fatalf("second CPU reading = %+v, %v; want 40 %% of 2 CPUs", cpu, err)
	}
	if m, err := src.Memory(ctx); err != nil || m.UsedPercent != 75 {
		t.Errorf("memory = %+v, %v; want 75 %% used", m, err)
	}
	if l, err := src.Load(ctx); err != nil || l.Load15 != 1.43 {
		t.Errorf("load = %+v, %v", l, err)
	}
	if up, err := src.Uptime(ctx); err != nil || up != 1247 {
		t.Errorf("uptime = %d, %v; want 1247", up, err)
	}

	if err := os.Remove(filepath.Join(root, "loadavg")); err != nil {
		t.Fatal(err)
	}
	if _, err := src.Load(ctx); err == nil || !strings.Contains(err.Error(), filepath.Join(root, "loadavg")) {
		t.Errorf("load without the file: error %v, want one naming it", err)
	}
}

// TestProcSourceReadsLargeFiles checks that a proc file larger than the
// initial buffer is read whole, as /proc/stat is on hosts with many CPUs.
func TestProcSourceReadsLargeFiles(t *testing.T) {
	root := t.TempDir()
	var b strings.Builder
	b.WriteString("cpu  100 0 50 800 50 0 0 0 0 0\n")
	const cpus = 512
	for i := range cpus {
		b.WriteString("cpu" + strconv.Itoa(i) + " 1 0 0 0 0 0 0 0 0 0\n")
	}
	if err := os.WriteFile(filepath.Join(root, "stat"), []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	cpu, err := newProcSource(root).CPU(context.Background())
	if err != nil || cpu.Count != cpus {
		t.Fatalf("CPU reading of a %d-byte /proc/stat = %+v, %v; want %d CPUs", b.Len(), cpu, err, cpus)
	}
}
