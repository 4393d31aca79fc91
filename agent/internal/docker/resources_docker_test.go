package docker

import (
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/api/types/build"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	flotillav1 "flotilla.dev/gen/flotilla/v1"
)

// memhogSource is a program that holds HOLD_MB MiB of touched memory, and
// with GROW set keeps allocating until the kernel kills it.
const memhogSource = `package main

import (
	"os"
	"strconv"
	"time"
)

var held [][]byte

func touch(n int) {
	b := make([]byte, n)
	for i := 0; i < n; i += 4096 {
		b[i] = 1
	}
	held = append(held, b)
}

func main() {
	if mb, err := strconv.Atoi(os.Getenv("HOLD_MB")); err == nil {
		touch(mb << 20)
	}
	for {
		if os.Getenv("GROW") != "" {
			touch(1 << 20)
			time.Sleep(5 * time.Millisecond)
		} else {
			time.Sleep(time.Hour)
		}
	}
}
`

// buildMemhog builds an image FROM scratch holding the memhog program,
// labelled with the run ID (the fixture's sweep removes it) and removed
// when the test ends.
func (fx *fixture) buildMemhog(t testing.TB) string {
	t.Helper()
	ctx := testContext(t)
	dir := t.TempDir()
	for name, content := range map[string]string{"main.go": memhogSource, "go.mod": "module memhog\n\ngo 1.22\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	cmd := exec.CommandContext(ctx, goBin, "build", "-trimpath", "-o", "memhog", ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOWORK=off", "GOFLAGS=-mod=mod")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build memhog: %v: %s", err, out)
	}
	ref := "flotilla-test/memhog:" + fx.runID
	buildCtx, err := tarContext(map[string]string{"Dockerfile": "FROM scratch\nCOPY memhog /\nENTRYPOINT [\"/memhog\"]\n"},
		map[string]string{"memhog": filepath.Join(dir, "memhog")})
	if err != nil {
		t.Fatal(err)
	}
	res, err := fx.docker.ImageBuild(ctx, buildCtx, client.ImageBuildOptions{
		Tags: []string{ref}, Remove: true, ForceRemove: true, Labels: fx.labels(nil), Version: build.BuilderV1,
	})
	if err != nil {
		t.Fatalf("build %s: %v", ref, err)
	}
	if err := drainJSON(ctx, res.Body); err != nil {
		t.Fatalf("build %s: %v", ref, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = fx.removeImage(ctx, ref)
	})
	return ref
}

// runMemhog creates and starts a managed memhog container with a memory
// limit and no swap, removed when the test ends.
func (fx *fixture) runMemhog(t testing.TB, image, suffix string, limit int64, restart container.RestartPolicy, env ...string) string {
	t.Helper()
	ctx := testContext(t)
	name := fmt.Sprintf("flotilla-test-%s-%s", fx.runID, suffix)
	t.Cleanup(func() { fx.removeApp(name) })
	created, err := fx.docker.ContainerCreate(ctx, client.ContainerCreateOptions{
		Name:   name,
		Config: &container.Config{Image: image, Env: env, Labels: fx.labels(map[string]string{"flotilla.managed": "true"})},
		HostConfig: &container.HostConfig{RestartPolicy: restart,
			Resources: container.Resources{Memory: limit, MemorySwap: limit}},
	})
	if err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
	for _, w := range created.Warnings {
		// Without swap accounting the container could swap instead of
		// reaching its limit: the memory figures would not be what the
		// tests expect.
		if strings.Contains(strings.ToLower(w), "swap") {
			t.Skipf("the engine cannot limit the container's swap: %s", w)
		}
	}
	if _, err := fx.docker.ContainerStart(ctx, created.ID, client.ContainerStartOptions{}); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	return name
}

// readResources lists the managed containers, keeps the one called name
// and reads its resources.
func readResources(t testing.TB, e *Executor, name string) *flotillav1.ManagedContainer {
	t.Helper()
	ctx := testContext(t)
	all, err := e.ManagedContainers(ctx)
	if err != nil {
		t.Fatalf("ManagedContainers: %v", err)
	}
	for _, c := range all {
		if c.GetName() != name {
			continue
		}
		if err := e.ContainerResources(ctx, []*flotillav1.ManagedContainer{c}); err != nil {
			t.Fatalf("ContainerResources: %v", err)
		}
		return c
	}
	t.Fatalf("container %s is not among the managed containers", name)
	return nil
}

func TestContainerResourcesMatchDockerStats(t *testing.T) {
	fx := requireDocker(t)
	e := newTestExecutor(t, fx, nil)
	image := fx.buildMemhog(t)
	const limit = 128 << 20
	name := fx.runMemhog(t, image, "hold", limit, container.RestartPolicy{Name: container.RestartPolicyDisabled}, "HOLD_MB=48")

	// Poll until the program has touched what it holds.
	deadline := time.Now().Add(30 * time.Second)
	var c *flotillav1.ManagedContainer
	for {
		c = readResources(t, e, name)
		if c.GetResources().GetMemoryWorkingSetBytes() >= 48<<20 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("working set never reached 48 MiB: %v", c.GetResources())
		}
		time.Sleep(100 * time.Millisecond)
	}
	ours := c.GetResources()
	theirs, theirLimit := dockerStatsMemory(t, name)
	diff := math.Abs(float64(ours.GetMemoryWorkingSetBytes()) - theirs)
	if tolerance := math.Max(2<<20, 0.05*theirs); diff > tolerance {
		t.Errorf("working set %d bytes, docker stats %.0f: differ by %.0f, more than %.0f", ours.GetMemoryWorkingSetBytes(), theirs, diff, tolerance)
	}
	t.Logf("working set %.1f MiB, raw usage %.1f MiB, docker stats %.1f MiB",
		float64(ours.GetMemoryWorkingSetBytes())/(1<<20), float64(ours.GetMemoryUsageBytes())/(1<<20), theirs/(1<<20))
	if ours.GetMemoryLimitBytes() != limit || theirLimit != limit {
		t.Errorf("limit %d, docker stats %.0f; want %d", ours.GetMemoryLimitBytes(), theirLimit, limit)
	}
	if ours.GetMemoryUsageBytes() < ours.GetMemoryWorkingSetBytes() {
		t.Errorf("usage %d below the working set %d", ours.GetMemoryUsageBytes(), ours.GetMemoryWorkingSetBytes())
	}
	if ours.GetOomKilled() || ours.GetOomKills() != 0 || ours.GetRestartCount() != 0 || ours.GetStartedAt() == nil {
		t.Errorf("a healthy container: %v", ours)
	}
	if p := ours.GetCpuPercent(); math.IsNaN(p) || p < 0 {
		t.Errorf("cpu_percent %v after a previous reading", p)
	}
}

// dockerStatsMemory is the memory use and limit `docker stats` shows.
func dockerStatsMemory(t *testing.T, name string) (used, limit float64) {
	t.Helper()
	out, err := exec.CommandContext(testContext(t), "docker", "stats", "--no-stream", "--format", "{{.MemUsage}}", name).CombinedOutput()
	if err != nil {
		t.Fatalf("docker stats: %v: %s", err, out)
	}
	parts := strings.Split(strings.TrimSpace(string(out)), " / ")
	if len(parts) != 2 {
		t.Fatalf("docker stats memory %q: want \"used / limit\"", out)
	}
	return parseDockerBytes(t, parts[0]), parseDockerBytes(t, parts[1])
}

// parseDockerBytes parses docker stats' binary sizes ("49.14MiB").
func parseDockerBytes(t *testing.T, s string) float64 {
	t.Helper()
	for _, u := range []struct {
		suffix string
		mult   float64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"B", 1}} {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			v, err := strconv.ParseFloat(num, 64)
			if err != nil {
				t.Fatalf("docker stats size %q: %v", s, err)
			}
			return v * u.mult
		}
	}
	t.Fatalf("docker stats size %q has no known unit", s)
	return 0
}

func TestContainerResourcesReportOOMKills(t *testing.T) {
	fx := requireDocker(t)
	e := newTestExecutor(t, fx, nil)
	image := fx.buildMemhog(t)
	// Docker restarts it once after the first kill; the second ends it.
	name := fx.runMemhog(t, image, "oom", 32<<20,
		container.RestartPolicy{Name: container.RestartPolicyOnFailure, MaximumRetryCount: 1}, "GROW=1")
	deadline := time.Now().Add(40 * time.Second)
	for {
		in := fx.inspect(t, name)
		if in.State != nil && in.State.Status == container.StateExited && in.RestartCount == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the container was not killed twice: restarts %d, state %+v", in.RestartCount, in.State)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for i := range 2 { // the same kill read twice counts once
		res := readResources(t, e, name).GetResources()
		if !res.GetOomKilled() || res.GetOomKills() != 1 || res.GetRestartCount() != 1 || res.GetLastOomKillAt() == nil {
			t.Fatalf("reading %d: oom_killed %v, oom_kills %d, restarts %d, last kill %v; want true, 1, 1, set",
				i, res.GetOomKilled(), res.GetOomKills(), res.GetRestartCount(), res.GetLastOomKillAt())
		}
		if res.GetMemoryWorkingSetBytes() != 0 || res.GetMemoryLimitBytes() != 32<<20 {
			t.Errorf("stopped container: working set %d, limit %d; want 0, %d", res.GetMemoryWorkingSetBytes(), res.GetMemoryLimitBytes(), 32<<20)
		}
	}
}

// BenchmarkContainerResources is the cost of one heartbeat's resource
// reading of one running container: an inspect and a one-shot stats
// reading, through the agent's Docker client. ns/op is mostly waiting for
// the engine, which publishes stats once a second; cpu-ns/op is the CPU
// the test process (the agent's side) spent per reading.
func BenchmarkContainerResources(b *testing.B) {
	fx := requireDocker(b)
	e := newTestExecutor(b, fx, nil)
	name := fx.runMemhog(b, fx.buildMemhog(b), "bench", 64<<20, container.RestartPolicy{Name: container.RestartPolicyDisabled}, "HOLD_MB=8")
	c := readResources(b, e, name)
	ctx := testContext(b)
	cs := []*flotillav1.ManagedContainer{c}
	b.ReportAllocs()
	before := processCPU(b)
	n := 0
	for b.Loop() {
		if err := e.ContainerResources(ctx, cs); err != nil {
			b.Fatal(err)
		}
		n++
	}
	b.ReportMetric(float64(processCPU(b)-before)/float64(n), "cpu-ns/op")
}

// processCPU is the CPU time, user and system, the process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
