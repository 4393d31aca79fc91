package sim

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"flotilla.dev/agent/internal/executor"
	flotillav1 "flotilla.dev/gen/flotilla/v1"
	"flotilla.dev/pkg/command"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Latency is a simulated duration: Mean, plus or minus up to Jitter, drawn
// uniformly.
type Latency struct {
	Mean   time.Duration
	Jitter time.Duration
}

func (l Latency) draw() time.Duration {
	d := l.Mean
	if l.Jitter > 0 {
		d += time.Duration(rand.Int64N(int64(2*l.Jitter)+1)) - l.Jitter
	}
	return max(d, 0)
}

// Profile is how the simulated hosts behave.
type Profile struct {
	// Pull, Restart, Backup and Drain are how long each kind of command
	// takes (drain also stands for undrain).
	Pull, Restart, Backup, Drain Latency
	// FailureRate is the probability, 0 to 1, that a pull, restart or
	// backup fails.
	FailureRate float64
	// HealthFailureRate is the probability, 0 to 1, that one health check
	// reports the application unhealthy.
	HealthFailureRate float64
	// UnhealthyImage: an application restarted on an image whose reference
	// contains it is never healthy (a broken release, for rollouts).
	// Empty disables it.
	UnhealthyImage string
	// InitialImage is the image the application runs at start.
	InitialImage string
}

// containerName is the one application container each simulated host runs.
const containerName = "web"

// host is one simulated machine: its application container, its health
// and its readings. It implements the agent's executors and readers, so
// the agent's real runner, journal and stream drive it.
type host struct {
	name    string
	profile Profile
	stats   *Stats
	started time.Time

	mu         sync.Mutex
	image      string // the running container's image
	generation int    // containers created so far
}

func newHost(name string, p Profile, stats *Stats) *host {
	return &host{name: name, profile: p, stats: stats, started: time.Now(), image: p.InitialImage, generation: 1}
}

// Validate implements executor.Executor: the simulated guard rails accept
// every well-formed command for the one container.
func (h *host) Validate(spec *flotillav1.CommandSpec) error {
	h.stats.received(spec)
	switch k := spec.GetKind().(type) {
	case *flotillav1.CommandSpec_Pull:
		if k.Pull.GetImage() == "" {
			return executor.Reject("pull.image is required")
		}
	case *flotillav1.CommandSpec_Restart:
		if c := k.Restart.GetContainer(); c != containerName {
			return executor.Reject("container %q is not managed here (this simulated host runs %q)", c, containerName)
		}
	case *flotillav1.CommandSpec_Backup:
		if k.Backup.GetDatabase() == "" {
			return executor.Reject("backup.database is required")
		}
	}
	return nil
}

// Execute implements executor.Executor: it waits the profile's latency
// (or until cancelled), fails at the profile's rate, and otherwise changes
// the simulated host as the real executor would change the real one.
func (h *host) Execute(ctx context.Context, spec *flotillav1.CommandSpec, progress executor.Progress) (*flotillav1.CommandResult, error) {
	kind := command.Kind(spec)
	var lat Latency
	switch kind {
	case command.KindPull:
		lat = h.profile.Pull
	case command.KindRestart:
		lat = h.profile.Restart
	case command.KindBackup:
		lat = h.profile.Backup
	default:
		lat = h.profile.Drain
	}
	progress(&flotillav1.CommandProgress{Message: "simulated " + kind})
	if d := lat.draw(); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("simulated %s interrupted: %w", kind, context.Cause(ctx))
		case <-t.C:
		}
	}
	fails := kind == command.KindPull || kind == command.KindRestart || kind == command.KindBackup
	if fails && h.profile.FailureRate > 0 && rand.Float64() < h.profile.FailureRate {
		h.stats.failed.Add(1)
		return nil, fmt.Errorf("simulated %s failure (failure rate %.2f); nothing was changed", kind, h.profile.FailureRate)
	}
	h.stats.succeeded.Add(1)
	switch k := spec.GetKind().(type) {
	case *flotillav1.CommandSpec_Pull:
		return &flotillav1.CommandResult{Kind: &flotillav1.CommandResult_Pull{Pull: &flotillav1.PullResult{
			Image: k.Pull.GetImage(), ImageId: imageID(k.Pull.GetImage()),
		}}}, nil
	case *flotillav1.CommandSpec_Restart:
		return h.restart(k.Restart), nil
	case *flotillav1.CommandSpec_Backup:
		now := time.Now()
		return &flotillav1.CommandResult{Kind: &flotillav1.CommandResult_Backup{Backup: &flotillav1.BackupResult{
			Database: k.Backup.GetDatabase(), Path: "/sim/" + h.name + "/" + k.Backup.GetDatabase() + ".dump",
			SizeBytes: 1 << 20, Sha256: strings.Repeat("0", 64), StartedAt: timestamppb.New(now),
			Duration: durationpb.New(0), PgDumpVersion: "sim", ServerVersion: "sim", VerifiedEntries: 1,
		}}}, nil
	case *flotillav1.CommandSpec_Drain:
		return drainResult(k.Drain.GetUpstream(), k.Drain.GetServer()), nil
	case *flotillav1.CommandSpec_Undrain:
		return drainResult(k.Undrain.GetUpstream(), k.Undrain.GetServer()), nil
	}
	return nil, fmt.Errorf("simulated host cannot run %s", kind)
}

func (h *host) restart(r *flotillav1.RestartCommand) *flotillav1.CommandResult {
	h.mu.Lock()
	defer h.mu.Unlock()
	prev, prevID := h.image, h.containerID()
	if r.GetImage() != "" {
		h.image = r.GetImage()
	}
	h.generation++
	return &flotillav1.CommandResult{Kind: &flotillav1.CommandResult_Restart{Restart: &flotillav1.RestartResult{
		Container: containerName, ContainerId: h.containerID(), Image: h.image, ImageId: imageID(h.image),
		PreviousContainerId: prevID, PreviousImage: prev, PreviousImageId: imageID(prev),
	}}}
}

func drainResult(upstream, server string) *flotillav1.CommandResult {
	return &flotillav1.CommandResult{Kind: &flotillav1.CommandResult_Drain{Drain: &flotillav1.DrainResult{
		Upstream: upstream, Server: server, File: "/sim/upstreams/" + upstream + ".conf", Changed: true,
	}}}
}

// containerID is the current container's ID; h.mu is held.
func (h *host) containerID() string {
	return fmt.Sprintf("%s-%s-%d", containerName, h.name, h.generation)
}

func imageID(ref string) string { return fmt.Sprintf("sha256:%064x", hashString(ref)) }

// hashString is FNV-1a: enough to give each reference its own stable ID.
func hashString(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

// ManagedContainers implements agent.ContainerLister.
func (h *host) ManagedContainers(context.Context) ([]*flotillav1.ManagedContainer, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return []*flotillav1.ManagedContainer{{
		Name: containerName, ContainerId: h.containerID(), Image: h.image, ImageId: imageID(h.image), State: "running",
	}}, nil
}

// Collect implements agent.HostReader with plausible, varying readings.
func (h *host) Collect(context.Context) *flotillav1.HostMetrics {
	h.stats.heartbeats.Add(1)
	const memTotal, diskTotal = 8 << 30, 100 << 30
	memUsed := uint64(float64(memTotal) * (0.3 + 0.2*rand.Float64()))
	diskUsed := uint64(float64(diskTotal) * (0.4 + 0.01*rand.Float64()))
	cpu := 5 + 30*rand.Float64()
	return &flotillav1.HostMetrics{
		CpuPercent:       cpu,
		MemoryPercent:    100 * float64(memUsed) / memTotal,
		MemoryUsedBytes:  memUsed,
		MemoryTotalBytes: memTotal,
		Disks: []*flotillav1.DiskUsage{{
			Path: "/", UsedPercent: 100 * float64(diskUsed) / diskTotal, UsedBytes: diskUsed, TotalBytes: diskTotal,
		}},
		Load1: cpu / 25, Load5: cpu / 30, Load15: cpu / 35,
		UptimeSeconds: uint64(time.Since(h.started).Seconds()) + 86400,
		CpuCount:      2,
	}
}

// Check implements agent.HealthChecker: healthy unless the image is a
// broken one or the profile's failure rate says otherwise this time.
func (h *host) Check(context.Context) *flotillav1.AppHealth {
	h.mu.Lock()
	image := h.image
	h.mu.Unlock()
	now := time.Now()
	app := &flotillav1.AppHealth{
		Url: "http://" + h.name + ".sim/health", Healthy: true, Status: "healthy",
		Timestamp: now.UTC().Format(time.RFC3339), Database: "ok", Cache: "ok",
		HttpStatus: 200, Latency: durationpb.New(2 * time.Millisecond), CheckedAt: timestamppb.New(now),
	}
	switch {
	case h.profile.UnhealthyImage != "" && strings.Contains(image, h.profile.UnhealthyImage):
		app.Healthy, app.Status, app.Database, app.HttpStatus = false, "unhealthy", "unreachable", 503
		app.Error = "status is \"unhealthy\", database is \"unreachable\" (simulated broken image " + image + ")"
	case h.profile.HealthFailureRate > 0 && rand.Float64() < h.profile.HealthFailureRate:
		app.Healthy, app.Status, app.Cache, app.HttpStatus = false, "degraded", "timeout", 503
		app.Error = "status is \"degraded\", cache is \"timeout\" (simulated)"
	}
	return app
}
