package scenario

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"flotilla.dev/bench/internal/harness"
	"flotilla.dev/bench/internal/procfs"
	"flotilla.dev/bench/internal/results"
	"flotilla.dev/bench/internal/stats"
	flotillav1 "flotilla.dev/gen/flotilla/v1"
)

// AgentIdle measures one real agent, registered and idle with its
// defaults: RSS and CPU over a window after a warm-up, and the size of
// the stripped binary.
func AgentIdle(ctx context.Context, o Options) (figs []results.Figure, err error) {
	warmup := or(o.Settle, o.quick(5*time.Second, 10*time.Second))
	window := or(o.Window, o.quick(20*time.Second, 60*time.Second))
	env, err := o.env("agent-idle")
	if err != nil {
		return nil, err
	}
	defer closeEnv(ctx, env, &err)
	cp, err := env.StartControlPlane(ctx, harness.CPConfig{LogLevel: o.CPLogLevel})
	if err != nil {
		return nil, err
	}
	defer cp.Close()
	docker := harness.AgentUsesDocker()
	a, err := env.StartAgent(ctx, cp, "bench-idle")
	if err != nil {
		return nil, err
	}
	env.Logf("agent connected; warm-up %s, then measuring for %s", warmup, window)
	if err := sleep(ctx, warmup); err != nil {
		return nil, err
	}
	s0, err := procfs.Read(a.Proc.Pid())
	if err != nil {
		return nil, err
	}
	if err := sleep(ctx, window); err != nil {
		return nil, err
	}
	s1, err := procfs.Read(a.Proc.Pid())
	if err != nil {
		return nil, err
	}
	if _, err := a.WaitState(ctx, cp, flotillav1.AgentState_AGENT_STATE_CONNECTED, 10*time.Second); err != nil {
		return nil, fmt.Errorf("after the window: %w", err)
	}
	bin := filepath.Join(o.BinDir, "flotilla-agent")
	info, err := os.Stat(bin)
	if err != nil {
		return nil, err
	}
	cpuPct := procfs.CPUCores(s0, s1) * 100
	size := info.Size()
	executors := "host metrics and heartbeats only (no Docker socket)"
	if docker {
		executors = "Docker executor on (" + harness.DockerSocket + " present, no containers managed)"
	}
	notes := fmt.Sprintf("%sagent defaults (only address, CA pin, join token, state dir and hostname given); %s; warm-up %s, window %s (CPU resolution %.3f %%)",
		quickNote(o), executors, warmup, window, 100*float64(time.Second/procfs.ClockTicks)/float64(window))
	const mb = 1_000_000
	figs = []results.Figure{
		{Name: "agent idle: RSS", Agents: 1, Value: mib(float64(s1.RSS)), Target: "≤ 15 MiB",
			Met: results.MetIf(s1.RSS <= 15<<20), Notes: notes},
		{Name: "agent idle: CPU", Agents: 1, Value: fmt.Sprintf("%.3f %% of a core", cpuPct), Target: "≤ 0.1 % of a core",
			Met: results.MetIf(cpuPct <= 0.1), Notes: notes},
		{Name: "agent binary size (stripped)", Agents: 1,
			Value:  fmt.Sprintf("%.1f MB (%s)", float64(size)/mb, mib(float64(size))),
			Target: "≤ 15 MB", Met: results.MetIf(size <= 15*mb), Notes: "bin/flotilla-agent as make build makes it (-s -w, CGO off)"},
	}
	return figs, nil
}

// LostAgent measures how long after its last heartbeat a silent host is
// declared lost, with the control plane's and the agent's default
// settings. The real agent is stopped with SIGSTOP: its TCP connection
// stays open (the kernel still acknowledges), as with a hung host or a
// network that drops packets, so nothing but the missing heartbeats
// tells. The detection time is state_changed_at − last_seen_at, both on
// the control plane's clock. Between runs the agent is resumed and
// reconnects.
func LostAgent(ctx context.Context, o Options) (figs []results.Figure, err error) {
	runs := or(o.Runs, o.quickN(1, 3))
	env, err := o.env("lost-agent")
	if err != nil {
		return nil, err
	}
	defer closeEnv(ctx, env, &err)
	cp, err := env.StartControlPlane(ctx, harness.CPConfig{LogLevel: o.CPLogLevel})
	if err != nil {
		return nil, err
	}
	defer cp.Close()
	a, err := env.StartAgent(ctx, cp, "bench-lost")
	if err != nil {
		return nil, err
	}
	var detections, observed []time.Duration
	var reason string
	for i := range runs {
		if _, err := a.WaitState(ctx, cp, flotillav1.AgentState_AGENT_STATE_CONNECTED, 2*time.Minute); err != nil {
			return nil, err
		}
		// Stop it at a random point of its heartbeat cycle, as a host
		// hangs whenever it hangs.
		if err := sleep(ctx, time.Duration(1+i)*1700*time.Millisecond); err != nil {
			return nil, err
		}
		if err := a.Proc.Signal(syscall.SIGSTOP); err != nil {
			return nil, err
		}
		stopped := time.Now()
		lost, err := a.WaitState(ctx, cp, flotillav1.AgentState_AGENT_STATE_LOST, 5*time.Minute)
		seen := time.Now()
		if cerr := a.Proc.Signal(syscall.SIGCONT); cerr != nil && err == nil {
			err = cerr
		}
		if err != nil {
			return nil, err
		}
		last, changed := lost.GetLastSeenAt().AsTime(), lost.GetStateChangedAt().AsTime()
		d := changed.Sub(last)
		detections = append(detections, d)
		reason = lost.GetStateReason()
		observed = append(observed, seen.Sub(last))
		env.Logf("run %d: lost %s after its last heartbeat (SIGSTOP %s after it; reason %q)", i+1,
			stats.Seconds(d), stats.Seconds(stopped.Sub(last)), lost.GetStateReason())
	}
	s := stats.Summarize(detections)
	values := make([]string, len(detections))
	for i, d := range detections {
		values[i] = stats.Seconds(d)
	}
	notes := fmt.Sprintf("%sreal agent SIGSTOPped, %d runs: %s; agent_lost_after and heartbeat interval at their defaults; first seen lost by polling after max %s; reason %q",
		quickNote(o), runs, strings.Join(values, ", "), stats.Seconds(stats.Summarize(observed).Max), reason)
	figs = []results.Figure{
		{Name: "lost agent: detected after its last heartbeat (default settings)", Agents: 1,
			Value:  fmt.Sprintf("max %s (p50 %s)", stats.Seconds(s.Max), stats.Seconds(s.P50)),
			Target: "≤ 15 s", Met: results.MetIf(s.Max <= 15*time.Second), Notes: notes},
	}
	return figs, nil
}
