package hostmetrics

import (
	"context"
	"errors"
	"runtime"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeSource returns fixed readings; failing names the metrics that fail.
type fakeSource struct {
	failing map[string]bool
}

var errRead = errors.New("read failed")

func (f fakeSource) fail(metric string) error {
	if f.failing[metric] {
		return errRead
	}
	return nil
}

func (f fakeSource) CPU(context.Context) (CPUReading, error) {
	if err := f.fail("cpu"); err != nil {
		return CPUReading{}, err
	}
	return CPUReading{BusyPercent: 12.5, Count: 4}, nil
}
func (f fakeSource) Memory(context.Context) (MemoryReading, error) {
	if err := f.fail("memory"); err != nil {
		return MemoryReading{}, err
	}
	return MemoryReading{UsedPercent: 50, UsedBytes: 4 << 30, TotalBytes: 8 << 30}, nil
}
func (f fakeSource) Disk(_ context.Context, path string) (DiskUsage, error) {
	if err := f.fail("disk " + path); err != nil {
		return DiskUsage{}, err
	}
	return DiskUsage{UsedPercent: 25, UsedBytes: 25, TotalBytes: 100}, nil
}
func (f fakeSource) Load(context.Context) (LoadAverage, error) {
	if err := f.fail("load"); err != nil {
		return LoadAverage{}, err
	}
	return LoadAverage{Load1: 1, Load5: 0.5, Load15: 0.25}, nil
}
func (f fakeSource) Uptime(context.Context) (uint64, error) { return 3600, f.fail("uptime") }

func newCollector(t *testing.T, src Source, paths ...string) (*Collector, *observer.ObservedLogs, *clockwork.FakeClock) {
	t.Helper()
	core, logs := observer.New(zapcore.DebugLevel)
	clock := clockwork.NewFakeClock()
	c, err := New(Config{DiskPaths: paths, Logger: zap.New(core), Clock: clock, Source: src, ErrorLogInterval: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	return c, logs, clock
}

func TestCollectAll(t *testing.T) {
	c, logs, _ := newCollector(t, fakeSource{}, "/data", "/data/", "/")
	m := c.Collect(context.Background())
	if m.CpuPercent != 12.5 || m.CpuCount != 4 || m.MemoryPercent != 50 || m.MemoryUsedBytes != 4<<30 ||
		m.MemoryTotalBytes != 8<<30 || m.Load1 != 1 || m.Load5 != 0.5 || m.Load15 != 0.25 || m.UptimeSeconds != 3600 {
		t.Errorf("unexpected metrics %v", m)
	}
	if len(m.Disks) != 2 || m.Disks[0].Path != "/" || m.Disks[1].Path != "/data" {
		t.Fatalf("disks = %v, want / and /data once each", m.Disks)
	}
	if d := m.Disks[1]; d.UsedPercent != 25 || d.UsedBytes != 25 || d.TotalBytes != 100 {
		t.Errorf("disk = %v", d)
	}
	if logs.Len() != 0 {
		t.Errorf("unexpected logs: %v", logs.All())
	}
}

func TestOneFailingMetricDoesNotStopTheOthers(t *testing.T) {
	tests := []struct {
		metric string
		check  func(*testing.T, *Collector)
	}{
		{"memory", func(t *testing.T, c *Collector) {
			m := c.Collect(context.Background())
			if m.MemoryTotalBytes != 0 || m.CpuPercent != 12.5 || len(m.Disks) != 2 {
				t.Errorf("got %v", m)
			}
		}},
		{"disk /data", func(t *testing.T, c *Collector) {
			m := c.Collect(context.Background())
			if len(m.Disks) != 1 || m.Disks[0].Path != "/" || m.MemoryTotalBytes == 0 {
				t.Errorf("got %v", m)
			}
		}},
		{"cpu", func(t *testing.T, c *Collector) {
			m := c.Collect(context.Background())
			if m.CpuPercent != 0 || m.CpuCount != 0 || m.MemoryTotalBytes == 0 {
				t.Errorf("got %v", m)
			}
		}},
		{"load", func(t *testing.T, c *Collector) {
			m := c.Collect(context.Background())
			if m.Load1 != 0 || m.UptimeSeconds != 3600 {
				t.Errorf("got %v", m)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.metric, func(t *testing.T) {
			c, _, _ := newCollector(t, fakeSource{failing: map[string]bool{tt.metric: true}}, "/data")
			tt.check(t, c)
		})
	}
}

func TestFailuresAreRateLimited(t *testing.T) {
	src := fakeSource{failing: map[string]bool{"memory": true}}
	c, logs, clock := newCollector(t, src)
	ctx := context.Background()

	levels := func() (warn, debug int) {
		for _, e := range logs.TakeAll() {
			switch e.Level {
			case zapcore.WarnLevel:
				warn++
			case zapcore.DebugLevel:
				debug++
			}
		}
		return
	}

	c.Collect(ctx)
	if w, d := levels(); w != 1 || d != 0 {
		t.Fatalf("first failure: %d warn, %d debug; want 1 warn", w, d)
	}
	for i := 0; i < 5; i++ {
		clock.Advance(5 * time.Second)
		c.Collect(ctx)
	}
	if w, d := levels(); w != 0 || d != 5 {
		t.Fatalf("repeated failures: %d warn, %d debug; want 5 debug", w, d)
	}
	clock.Advance(time.Minute)
	c.Collect(ctx)
	if w, _ := levels(); w != 1 {
		t.Fatalf("after the interval: %d warn, want 1", w)
	}

	delete(src.failing, "memory")
	c.Collect(ctx)
	if got := logs.FilterMessage("host metric readable again").Len(); got != 1 {
		t.Errorf("recovery logged %d times, want 1", got)
	}
}

func TestNewRejectsRelativePath(t *testing.T) {
	if _, err := New(Config{Logger: zap.NewNop(), DiskPaths: []string{"data"}}); err == nil {
		t.Error("New accepted a relative disk path")
	}
	if _, err := New(Config{}); err == nil {
		t.Error("New accepted a config without logger")
	}
}

// TestProcSourceOnThisHost is a smoke test of the default source.
func TestProcSourceOnThisHost(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skipf("the host's metrics are read from /proc, which %s does not have", runtime.GOOS)
	}
	c, logs, _ := newCollector(t, nil)
	m := c.Collect(context.Background())
	if m.CpuCount == 0 || m.MemoryTotalBytes == 0 || len(m.Disks) != 1 || m.Disks[0].TotalBytes == 0 {
		t.Errorf("implausible readings %v (logs %v)", m, logs.All())
	}
}

// BenchmarkCollect is one heartbeat's host metrics from the default source.
func BenchmarkCollect(b *testing.B) {
	if runtime.GOOS != "linux" {
		b.Skipf("the host's metrics are read from /proc, which %s does not have", runtime.GOOS)
	}
	c, err := New(Config{Logger: zap.NewNop()})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		c.Collect(ctx)
	}
}
