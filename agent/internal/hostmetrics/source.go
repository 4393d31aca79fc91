package hostmetrics

import "context"

// Source reads the raw metrics. The default reads the kernel's files under
// /proc (or $HOST_PROC) and statfs(2) for disks; tests inject readings and
// failures through it.
type Source interface {
	// CPU is the busy share of all CPUs since the previous call, and the
	// number of online CPUs.
	CPU(ctx context.Context) (CPUReading, error)
	Memory(ctx context.Context) (MemoryReading, error)
	// Disk is the usage of the filesystem that holds path.
	Disk(ctx context.Context, path string) (DiskUsage, error)
	Load(ctx context.Context) (LoadAverage, error)
	// Uptime is the host's uptime in whole seconds.
	Uptime(ctx context.Context) (uint64, error)
}

// CPUReading is the CPU part of a heartbeat.
type CPUReading struct {
	// BusyPercent is the time not idle and not waiting for I/O, in percent
	// of all CPUs' time since the previous reading (0–100).
	BusyPercent float64
	// Count is the number of online CPUs.
	Count int
}

// MemoryReading is the host's memory. Used counts what is not available to
// new programs without swapping (MemTotal − MemAvailable), as free(1) does.
type MemoryReading struct {
	TotalBytes  uint64
	UsedBytes   uint64
	UsedPercent float64
}

// DiskUsage is one filesystem's usage as df(1) reports it: UsedPercent is
// of the space that unprivileged users can use (used + available), so it
// reaches 100 when they can write no more, before TotalBytes is used up.
type DiskUsage struct {
	TotalBytes  uint64
	UsedBytes   uint64
	UsedPercent float64
}

// LoadAverage is the run-queue load over 1, 5 and 15 minutes.
type LoadAverage struct {
	Load1, Load5, Load15 float64
}
