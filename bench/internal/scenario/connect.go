package scenario

import (
	"context"
	"fmt"
	"time"

	"flotilla.dev/bench/internal/harness"
	"flotilla.dev/bench/internal/procfs"
	"flotilla.dev/bench/internal/results"
	"flotilla.dev/bench/internal/stats"
)

// Connect measures a fleet connecting to one control plane and idling:
// the time until every agent is connected, the control plane's resident
// memory per agent once the fleet has settled (heartbeats flowing, the
// connection storm's garbage collected), and its CPU while idle.
//
// With several replicas it measures each of them (connectReplicas).
func Connect(ctx context.Context, o Options) (figs []results.Figure, err error) {
	if o.replicas() > 1 {
		return connectReplicas(ctx, o)
	}
	interval := or(o.Interval, 10*time.Second)
	settle := or(o.Settle, o.quick(interval, 2*interval))
	// Agents started together heartbeat in step: the window spans whole
	// intervals, or it could fall between two bursts.
	window := or(o.Window, o.quick(interval, 3*interval))
	env, err := o.env("connect")
	if err != nil {
		return nil, err
	}
	defer closeEnv(ctx, env, &err)

	cp, err := env.StartControlPlane(ctx, harness.FleetConfig(o.CPLogLevel, interval))
	if err != nil {
		return nil, err
	}
	defer cp.Close()
	// The baseline: a started, idle control plane with an empty fleet.
	if err := sleep(ctx, 2*time.Second); err != nil {
		return nil, err
	}
	before, err := cp.Sample()
	if err != nil {
		return nil, err
	}
	storeBefore, _, err := env.StoreSample()
	if err != nil {
		return nil, err
	}
	sims, took, err := o.startSims(ctx, env, harness.Replicas{cp}, harness.SimConfig{Agents: o.Agents, HeartbeatInterval: interval})
	if err != nil {
		return nil, err
	}
	registration, err := registrationFigure(o, env, cp, before, storeBefore)
	if err != nil {
		return nil, err
	}
	env.Logf("settling for %s, then measuring idle CPU for %s", settle, window)
	s0, s1, err := idleSamples(ctx, cp, settle, window)
	if err != nil {
		return nil, err
	}
	connected, err := cp.Connected(ctx)
	if err != nil {
		return nil, err
	}
	if err := sims.Check(); err != nil {
		return nil, err
	}
	simSample, _ := sims.Sample()

	n := float64(o.Agents)
	perAgent := float64(s1.RSS-before.RSS) / n
	total := float64(s1.RSS) / n
	cores := procfs.CPUCores(s0, s1)
	const rssTarget = 64 << 10
	notes := fmt.Sprintf("%sheartbeat %s; start rate %s; %d simulator processes (RSS %s together); RSS before agents %s, after %s; measured after %s idle",
		quickNote(o)+simNote(o), interval, startRate(o.StartRate), sims.Processes(), mib(float64(simSample.RSS)),
		mib(float64(before.RSS)), mib(float64(s1.RSS)), settle)
	figs = []results.Figure{
		{Name: "connect: agents connected to one control plane", Agents: o.Agents,
			Value:  fmt.Sprintf("%s of %s", thousands(int64(connected)), thousands(int64(o.Agents))),
			Target: "50,000 (stretch 100,000)", Met: atSize(o.Agents, 50000, connected >= o.Agents), Notes: notes},
		{Name: "connect: time until all agents connected", Agents: o.Agents, Value: stats.Seconds(took),
			Target: "—", Met: results.NA, Notes: notes},
		{Name: "connect: control-plane RSS per agent ((after − before) / N)", Agents: o.Agents, Value: kib(perAgent),
			Target: "≤ 64 KiB (stretch 32 KiB)", Met: results.MetIf(perAgent <= rssTarget), Notes: notes},
		{Name: "connect: control-plane RSS / N (total)", Agents: o.Agents, Value: kib(total),
			Target: "≤ 64 KiB (stretch 32 KiB)", Met: results.MetIf(total <= rssTarget), Notes: notes},
		{Name: "connect: control-plane CPU while idle", Agents: o.Agents,
			Value:  fmt.Sprintf("%.2f %% of a core", cores*100),
			Target: "—", Met: results.NA, Notes: fmt.Sprintf("%sover %s; %.0f heartbeats/s offered", quickNote(o), window, n/interval.Seconds())},
		registration,
	}
	return figs, nil
}

// idleSamples waits settle, then samples the control plane at the start
// and the end of window.
func idleSamples(ctx context.Context, cp *harness.ControlPlane, settle, window time.Duration) (s0, s1 procfs.Sample, err error) {
	if err := sleep(ctx, settle); err != nil {
		return s0, s1, err
	}
	if s0, err = cp.Sample(); err != nil {
		return s0, s1, err
	}
	if err := sleep(ctx, window); err != nil {
		return s0, s1, err
	}
	s1, err = cp.Sample()
	return s0, s1, err
}

// shedMetric counts the Register calls refused over the in-flight bound.
const shedMetric = "flotilla_agent_registrations_shed_total"

// registrationFigure is the control plane's CPU per agent from before the
// fleet started until every agent was connected (registration: the
// signature and the store writes, then the stream's handshake), and on
// PostgreSQL the server's over the same span. The wall time of that span
// is mostly the simulators' key generation, which the machine's other
// load slows; the CPU is the control plane's own cost.
func registrationFigure(o Options, env *harness.Env, cp *harness.ControlPlane, before, storeBefore procfs.Sample) (results.Figure, error) {
	after, err := cp.Sample()
	if err != nil {
		return results.Figure{}, err
	}
	storeAfter, hasStore, err := env.StoreSample()
	if err != nil {
		return results.Figure{}, err
	}
	n := time.Duration(o.Agents)
	notes := "from before the simulators started until every agent was connected (registration, then mTLS stream and first heartbeat)"
	// Registrations over the control plane's in-flight bound are refused
	// and retried after a backoff: the wall time grows with them.
	if m, _, err := cp.Scrape(context.Background(), shedMetric); err == nil {
		notes += fmt.Sprintf("; %.0f registration calls shed and retried", m[shedMetric])
	}
	if hasStore {
		server := (storeAfter.CPU - storeBefore.CPU) / n
		notes += fmt.Sprintf("; PostgreSQL server meanwhile %s per agent (together %s)", stats.Millis(server), stats.Millis((after.CPU-before.CPU)/n+server))
	}
	return results.Figure{Name: "connect: control-plane CPU per agent registered and connected", Agents: o.Agents,
		Value: stats.Millis((after.CPU - before.CPU) / n), Target: "—", Met: results.NA, Notes: notes}, nil
}

func startRate(r float64) string {
	if r <= 0 {
		return "all at once"
	}
	return fmt.Sprintf("%g agents/s", r)
}

// simNote says when the simulators ran at a lower priority.
func simNote(o Options) string {
	if o.SimNice <= 0 {
		return ""
	}
	return fmt.Sprintf("simulators at nice %d; ", o.SimNice)
}
