package hostmetrics

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	flotillav1 "flotilla.dev/gen/flotilla/v1"
	"github.com/jonboulle/clockwork"
	"go.uber.org/zap"
)

// DefaultErrorLogInterval is how often a metric that keeps failing is logged
// at warn level; in between, its failures are logged at debug level.
const DefaultErrorLogInterval = 10 * time.Minute

// RootPath is always reported.
const RootPath = "/"

// Config configures a Collector.
type Config struct {
	// DiskPaths are reported in addition to RootPath.
	DiskPaths []string
	Logger    *zap.Logger
	// Clock paces the error log; nil uses the real clock.
	Clock clockwork.Clock
	// ErrorLogInterval defaults to DefaultErrorLogInterval.
	ErrorLogInterval time.Duration
	// Source defaults to reading the host's /proc and statfs(2).
	Source Source
	// ProcRoot is where the default Source finds the host's proc
	// filesystem; empty means $HOST_PROC, else /proc. An agent in a
	// container reports its host when the host's /proc is mounted there.
	ProcRoot string
}

// Collector reads host metrics. A metric that cannot be read is left at zero
// (or its disk left out) and logged; it never stops the others.
type Collector struct {
	source    Source
	diskPaths []string
	errors    *errorLog
}

// New fills the defaults of cfg, validates it and returns a Collector.
func New(cfg Config) (*Collector, error) {
	if cfg.Logger == nil {
		return nil, errors.New("hostmetrics: a logger is required")
	}
	if cfg.Clock == nil {
		cfg.Clock = clockwork.NewRealClock()
	}
	if cfg.ErrorLogInterval <= 0 {
		cfg.ErrorLogInterval = DefaultErrorLogInterval
	}
	if cfg.Source == nil {
		if cfg.ProcRoot == "" {
			cfg.ProcRoot = procRootFromEnv()
		}
		cfg.Source = newProcSource(cfg.ProcRoot)
	}
	paths := []string{RootPath}
	for _, p := range cfg.DiskPaths {
		if !filepath.IsAbs(p) {
			return nil, fmt.Errorf("hostmetrics: disk path %q is not absolute", p)
		}
		p = filepath.Clean(p)
		if !contains(paths, p) {
			paths = append(paths, p)
		}
	}
	return &Collector{
		source:    cfg.Source,
		diskPaths: paths,
		errors:    newErrorLog(cfg.Logger, cfg.Clock, cfg.ErrorLogInterval),
	}, nil
}

// Collect reads every metric once.
func (c *Collector) Collect(ctx context.Context) *flotillav1.HostMetrics {
	m := &flotillav1.HostMetrics{}

	if cpu, err := c.source.CPU(ctx); !c.errors.observe("cpu", err) {
		m.CpuPercent, m.CpuCount = cpu.BusyPercent, uint32(cpu.Count)
	}
	if vm, err := c.source.Memory(ctx); !c.errors.observe("memory", err) {
		m.MemoryPercent, m.MemoryUsedBytes, m.MemoryTotalBytes = vm.UsedPercent, vm.UsedBytes, vm.TotalBytes
	}
	if avg, err := c.source.Load(ctx); !c.errors.observe("load", err) {
		m.Load1, m.Load5, m.Load15 = avg.Load1, avg.Load5, avg.Load15
	}
	if up, err := c.source.Uptime(ctx); !c.errors.observe("uptime", err) {
		m.UptimeSeconds = up
	}
	for _, path := range c.diskPaths {
		u, err := c.source.Disk(ctx, path)
		if c.errors.observe("disk "+path, err) {
			continue
		}
		m.Disks = append(m.Disks, &flotillav1.DiskUsage{
			Path: path, UsedPercent: u.UsedPercent, UsedBytes: u.UsedBytes, TotalBytes: u.TotalBytes,
		})
	}
	return m
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
