package docker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
	"google.golang.org/protobuf/types/known/timestamppb"

	flotillav1 "flotilla.dev/gen/flotilla/v1"
)

// resourceState is what the resource reader keeps between heartbeats: the
// previous CPU counters of each container (the one-shot stats answer has
// no previous sample) and the OOM kills counted under each name.
type resourceState struct {
	mu sync.Mutex
	// since is when the executor was made: an OOM kill that ended a run
	// before it is not counted, so an agent restart does not count old
	// kills again.
	since time.Time
	cpu   map[string]cpuSample // by container ID
	oom   map[string]oomCount  // by reported name
}

// cpuSample is one reading of a container's CPU counters, nanoseconds.
type cpuSample struct {
	total, system uint64
}

// oomCount is the OOM kills counted under one container name.
type oomCount struct {
	kills uint64
	// lastAt is the end of the last run counted as an OOM kill.
	lastAt time.Time
}

func newResourceState(now time.Time) *resourceState {
	return &resourceState{since: now, cpu: make(map[string]cpuSample), oom: make(map[string]oomCount)}
}

// statsReading is the part of a stats answer the agent uses; the rest
// (block I/O, networks, pids) is skipped when decoding.
type statsReading struct {
	CPUStats    container.CPUStats    `json:"cpu_stats"`
	MemoryStats container.MemoryStats `json:"memory_stats"`
}

// resourceReadsInFlight bounds the containers read at once. The engine
// publishes stats once a second and a one-shot reading waits for the next
// publication, so readings one after the other would take a second each;
// read together, they all return at the same publication.
const resourceReadsInFlight = 32

// engineReading is what the engine answered about one container.
type engineReading struct {
	inspect container.InspectResponse
	stats   *statsReading // nil when the container does not run
	found   bool
}

// ContainerResources fills in the resources of cs, as ManagedContainers
// listed them: one inspect per container (restarts, OOM kills, limit) and,
// for a running one, one one-shot stats reading (CPU, memory). The
// containers are read concurrently. Those the engine did not answer for
// by the end of ctx, or with an error, are left without resources, and the
// first such error is returned.
func (e *Executor) ContainerResources(ctx context.Context, cs []*flotillav1.ManagedContainer) error {
	readings := make([]engineReading, len(cs))
	errs := make([]error, len(cs))
	sem := make(chan struct{}, resourceReadsInFlight)
	var wg sync.WaitGroup
	for i, c := range cs {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			readings[i], errs[i] = e.engineReading(ctx, c)
		})
	}
	wg.Wait()
	st := e.resources
	st.mu.Lock()
	defer st.mu.Unlock()
	running := make(map[string]struct{}, len(cs))
	for i, c := range cs {
		if errs[i] != nil || !readings[i].found {
			continue
		}
		c.Resources = st.apply(c.GetName(), c.GetContainerId(), readings[i])
		if readings[i].stats != nil {
			running[c.GetContainerId()] = struct{}{}
		}
	}
	// A container stopped, gone or re-created leaves its counters behind.
	for id := range st.cpu {
		if _, ok := running[id]; !ok {
			delete(st.cpu, id)
		}
	}
	return errors.Join(errs...)
}

// engineReading asks the engine about one container. A container removed
// since the list is not found, and no error.
func (e *Executor) engineReading(ctx context.Context, c *flotillav1.ManagedContainer) (engineReading, error) {
	id := c.GetContainerId()
	in, err := e.docker.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			return engineReading{}, nil
		}
		return engineReading{}, engineError(ctx, err, "inspect container %s", c.GetName())
	}
	r := engineReading{inspect: in.Container, found: true}
	if in.Container.State == nil || !in.Container.State.Running {
		return r, nil
	}
	stats, err := e.statsOnce(ctx, id)
	switch {
	case cerrdefs.IsNotFound(err):
		return r, nil
	case err != nil:
		return engineReading{}, engineError(ctx, err, "read the stats of container %s", c.GetName())
	}
	r.stats = &stats
	return r, nil
}

// apply turns the engine's answers about a container into its resources,
// counting a new OOM kill under name and keeping its CPU counters for the
// next reading. The caller holds st.mu.
func (st *resourceState) apply(name, id string, r engineReading) *flotillav1.ContainerResources {
	res := inspectResources(st, name, r.inspect)
	if r.stats == nil {
		return res
	}
	cpu := r.stats.CPUStats
	cur := cpuSample{total: cpu.CPUUsage.TotalUsage, system: cpu.SystemUsage}
	if prev, ok := st.cpu[id]; ok {
		res.CpuPercent = cpuPercent(prev, cur, onlineCPUs(cpu))
	}
	st.cpu[id] = cur
	res.MemoryUsageBytes = r.stats.MemoryStats.Usage
	res.MemoryWorkingSetBytes = workingSet(r.stats.MemoryStats)
	return res
}

// statsOnce takes one stats reading of the container id.
func (e *Executor) statsOnce(ctx context.Context, id string) (statsReading, error) {
	out, err := e.docker.ContainerStats(ctx, id, client.ContainerStatsOptions{Stream: false})
	if err != nil {
		return statsReading{}, err
	}
	defer out.Body.Close()
	var r statsReading
	if err := json.NewDecoder(out.Body).Decode(&r); err != nil {
		return statsReading{}, fmt.Errorf("decode the stats answer: %w", err)
	}
	// Drain what the decoder left so the connection can be reused.
	_, _ = io.Copy(io.Discard, out.Body)
	return r, nil
}

// inspectResources takes the figures of an inspect answer and counts a
// new OOM kill under name.
func inspectResources(st *resourceState, name string, in container.InspectResponse) *flotillav1.ContainerResources {
	res := &flotillav1.ContainerResources{RestartCount: uint32(max(in.RestartCount, 0))}
	if in.HostConfig != nil && in.HostConfig.Memory > 0 {
		res.MemoryLimitBytes = uint64(in.HostConfig.Memory)
	}
	s := in.State
	if s == nil {
		return res
	}
	if at, ok := parseEngineTime(s.StartedAt); ok {
		res.StartedAt = timestamppb.New(at)
	}
	res.OomKilled = s.OOMKilled
	count := st.oom[name]
	if finished, ok := parseEngineTime(s.FinishedAt); ok && s.OOMKilled &&
		finished.After(count.lastAt) && !finished.Before(st.since) {
		count.kills++
		count.lastAt = finished
		st.oom[name] = count
	}
	res.OomKills = count.kills
	if !count.lastAt.IsZero() {
		res.LastOomKillAt = timestamppb.New(count.lastAt)
	}
	return res
}

// parseEngineTime parses a time of the engine's inspect answer; the zero
// time it gives for "never" ("0001-01-01T00:00:00Z") is not a time.
func parseEngineTime(s string) (time.Time, bool) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || t.IsZero() || t.Year() <= 1 {
		return time.Time{}, false
	}
	return t, true
}

// workingSet is the memory the kernel cannot reclaim without swapping:
// usage minus the inactive file cache, computed as docker stats does it.
// cgroup v1 reports the hierarchy's cache as total_inactive_file (its
// inactive_file is the cgroup's own); cgroup v2 has inactive_file only.
func workingSet(m container.MemoryStats) uint64 {
	if v, v1 := m.Stats["total_inactive_file"]; v1 && v < m.Usage {
		return m.Usage - v
	}
	if v := m.Stats["inactive_file"]; v < m.Usage {
		return m.Usage - v
	}
	return m.Usage
}

// cpuPercent is the CPU a container used between two readings in percent
// of one CPU: its share of the host's CPU time times the online CPUs, as
// docker stats shows it. A counter going back (a restarted container
// under the same ID) gives 0.
func cpuPercent(prev, cur cpuSample, cpus uint32) float64 {
	if cur.total < prev.total || cur.system <= prev.system || cpus == 0 {
		return 0
	}
	used := float64(cur.total - prev.total)
	elapsed := float64(cur.system - prev.system)
	return used / elapsed * float64(cpus) * 100
}

// onlineCPUs is the engine's online_cpus, or on old engines the length of
// the per-CPU usage list.
func onlineCPUs(s container.CPUStats) uint32 {
	if s.OnlineCPUs > 0 {
		return s.OnlineCPUs
	}
	return uint32(len(s.CPUUsage.PercpuUsage))
}
