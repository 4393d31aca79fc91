package hostmetrics

import (
	"context"
	"errors"

	"github.com/shirou/gopsutil/v4/cpu"
	"github.com/shirou/gopsutil/v4/disk"
	"github.com/shirou/gopsutil/v4/host"
	"github.com/shirou/gopsutil/v4/load"
	"github.com/shirou/gopsutil/v4/mem"
)

// Source reads the raw metrics. The default reads the host through gopsutil
// (honouring HOST_PROC, HOST_SYS, ... when the agent runs in a container);
// tests inject failures through it.
type Source interface {
	// CPUPercent is the busy percentage across all CPUs since the previous call.
	CPUPercent(ctx context.Context) (float64, error)
	Memory(ctx context.Context) (*mem.VirtualMemoryStat, error)
	Disk(ctx context.Context, path string) (*disk.UsageStat, error)
	Load(ctx context.Context) (*load.AvgStat, error)
	Uptime(ctx context.Context) (uint64, error)
	CPUCount(ctx context.Context) (int, error)
}

// gopsutilSource is the Source backed by gopsutil.
type gopsutilSource struct{}

func (gopsutilSource) CPUPercent(ctx context.Context) (float64, error) {
	// An interval of 0 does not block: gopsutil compares with the CPU times
	// of its previous call (or of process start).
	p, err := cpu.PercentWithContext(ctx, 0, false)
	if err != nil {
		return 0, err
	}
	if len(p) == 0 {
		return 0, errors.New("no CPU reading")
	}
	return p[0], nil
}

func (gopsutilSource) Memory(ctx context.Context) (*mem.VirtualMemoryStat, error) {
	return mem.VirtualMemoryWithContext(ctx)
}

func (gopsutilSource) Disk(ctx context.Context, path string) (*disk.UsageStat, error) {
	return disk.UsageWithContext(ctx, path)
}

func (gopsutilSource) Load(ctx context.Context) (*load.AvgStat, error) {
	return load.AvgWithContext(ctx)
}

func (gopsutilSource) Uptime(ctx context.Context) (uint64, error) {
	return host.UptimeWithContext(ctx)
}

func (gopsutilSource) CPUCount(ctx context.Context) (int, error) {
	return cpu.CountsWithContext(ctx, true)
}
