package docker

import (
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
)

func TestWorkingSet(t *testing.T) {
	for _, tc := range []struct {
		name string
		mem  container.MemoryStats
		want uint64
	}{
		{"cgroup v1 subtracts the hierarchy's inactive file cache, not the cgroup's own",
			container.MemoryStats{Usage: 100 << 20, Stats: map[string]uint64{"total_inactive_file": 30 << 20, "inactive_file": 10 << 20, "cache": 50 << 20}},
			70 << 20},
		{"cgroup v2 subtracts inactive_file",
			container.MemoryStats{Usage: 100 << 20, Stats: map[string]uint64{"inactive_file": 40 << 20, "active_file": 5 << 20}},
			60 << 20},
		{"cgroup v1 with more cache than usage falls back to inactive_file",
			container.MemoryStats{Usage: 100 << 20, Stats: map[string]uint64{"total_inactive_file": 200 << 20, "inactive_file": 10 << 20}},
			90 << 20},
		{"no statistics: usage",
			container.MemoryStats{Usage: 100 << 20},
			100 << 20},
		{"inactive_file above usage: usage, never an underflow",
			container.MemoryStats{Usage: 10 << 20, Stats: map[string]uint64{"inactive_file": 20 << 20}},
			10 << 20},
		{"a stopped container reads zero", container.MemoryStats{}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := workingSet(tc.mem); got != tc.want {
				t.Errorf("workingSet = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestCPUPercent(t *testing.T) {
	prev := cpuSample{total: 1_000_000_000, system: 100_000_000_000}
	for _, tc := range []struct {
		name string
		cur  cpuSample
		cpus uint32
		want float64
	}{
		// The host's 4 CPUs ran 40 s between readings; the container used
		// 5 s: half of one CPU.
		{"half a CPU of four", cpuSample{total: 6_000_000_000, system: 140_000_000_000}, 4, 50},
		{"two CPUs busy of four", cpuSample{total: 21_000_000_000, system: 140_000_000_000}, 4, 200},
		{"idle", cpuSample{total: 1_000_000_000, system: 140_000_000_000}, 4, 0},
		{"container counter went back (restarted)", cpuSample{total: 10, system: 140_000_000_000}, 4, 0},
		{"no host time elapsed", cpuSample{total: 2_000_000_000, system: 100_000_000_000}, 4, 0},
		{"unknown CPU count", cpuSample{total: 6_000_000_000, system: 140_000_000_000}, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := cpuPercent(prev, tc.cur, tc.cpus); got != tc.want {
				t.Errorf("cpuPercent = %v, want %v", got, tc.want)
			}
		})
	}
	old := container.CPUStats{CPUUsage: container.CPUUsage{PercpuUsage: []uint64{1, 2, 3}}}
	if n := onlineCPUs(old); n != 3 {
		t.Errorf("onlineCPUs without online_cpus = %d, want the per-CPU list's length 3", n)
	}
	if n := onlineCPUs(container.CPUStats{OnlineCPUs: 8, CPUUsage: old.CPUUsage}); n != 8 {
		t.Errorf("onlineCPUs = %d, want online_cpus 8", n)
	}
}

// inspectAt is an inspect answer of a container that exited at finished.
func inspectAt(oomKilled bool, finished string, restarts int, limit int64) container.InspectResponse {
	return container.InspectResponse{
		RestartCount: restarts,
		State:        &container.State{OOMKilled: oomKilled, StartedAt: "2026-12-07T08:00:00.5Z", FinishedAt: finished},
		HostConfig:   &container.HostConfig{Resources: container.Resources{Memory: limit}},
	}
}

func TestInspectResourcesCountsEachOOMKillOnce(t *testing.T) {
	st := newResourceState(time.Date(2026, 12, 7, 8, 0, 0, 0, time.UTC))

	// An OOM kill before the agent started is reported but not counted:
	// an agent restart must not count old kills again.
	res := inspectResources(st, "web", inspectAt(true, "2026-12-07T07:59:00Z", 0, 64<<20))
	if !res.GetOomKilled() || res.GetOomKills() != 0 || res.GetLastOomKillAt() != nil {
		t.Fatalf("kill before the agent started: oom_killed %v, oom_kills %d, last %v; want true, 0, unset",
			res.GetOomKilled(), res.GetOomKills(), res.GetLastOomKillAt())
	}
	if res.GetMemoryLimitBytes() != 64<<20 || res.GetStartedAt().AsTime() != time.Date(2026, 12, 7, 8, 0, 0, 5e8, time.UTC) {
		t.Fatalf("limit %d, started %v", res.GetMemoryLimitBytes(), res.GetStartedAt().AsTime())
	}

	kill := "2026-12-07T08:05:00.123Z"
	for i := range 3 { // the same exit seen by three heartbeats counts once
		res = inspectResources(st, "web", inspectAt(true, kill, 1, 64<<20))
		if res.GetOomKills() != 1 {
			t.Fatalf("reading %d of one kill: oom_kills %d, want 1", i, res.GetOomKills())
		}
	}
	if got := res.GetLastOomKillAt().AsTime(); !got.Equal(time.Date(2026, 12, 7, 8, 5, 0, 123e6, time.UTC)) {
		t.Errorf("last_oom_kill_at = %v", got)
	}
	// A planned restart (exit without an OOM kill) is not counted.
	res = inspectResources(st, "web", inspectAt(false, "2026-12-07T08:06:00Z", 1, 64<<20))
	if res.GetOomKilled() || res.GetOomKills() != 1 || res.GetRestartCount() != 1 {
		t.Errorf("after a planned restart: oom_killed %v, oom_kills %d, restarts %d; want false, 1, 1",
			res.GetOomKilled(), res.GetOomKills(), res.GetRestartCount())
	}
	// A second kill, of a re-created container of the same name, counts.
	res = inspectResources(st, "web", inspectAt(true, "2026-12-07T08:10:00Z", 0, 64<<20))
	if res.GetOomKills() != 2 || res.GetRestartCount() != 0 {
		t.Errorf("second kill: oom_kills %d, restarts %d; want 2, 0", res.GetOomKills(), res.GetRestartCount())
	}
	// Other names have their own count.
	if res = inspectResources(st, "db", inspectAt(false, "0001-01-01T00:00:00Z", 0, 0)); res.GetOomKills() != 0 || res.GetMemoryLimitBytes() != 0 {
		t.Errorf("another container: oom_kills %d, limit %d; want 0, 0 (no limit)", res.GetOomKills(), res.GetMemoryLimitBytes())
	}
}

func TestParseEngineTime(t *testing.T) {
	if _, ok := parseEngineTime("0001-01-01T00:00:00Z"); ok {
		t.Error("the engine's zero time parsed as a time")
	}
	if _, ok := parseEngineTime(""); ok {
		t.Error("an empty time parsed")
	}
	if at, ok := parseEngineTime("2026-12-07T08:05:00.123456789Z"); !ok || at.Nanosecond() != 123456789 {
		t.Errorf("parseEngineTime = %v, %v", at, ok)
	}
}
