package scenario

import (
	"context"
	"fmt"
	"strings"
	"time"

	"flotilla.dev/bench/internal/harness"
	"flotilla.dev/bench/internal/procfs"
	"flotilla.dev/bench/internal/results"
	"flotilla.dev/bench/internal/stats"
)

// replicasName is what a figure's name says of several replicas, with
// extra (which replica was asked, say) when not empty; nothing for one
// control plane, whose figures keep their names.
func replicasName(rs harness.Replicas, extra string) string {
	if len(rs) <= 1 {
		return ""
	}
	if extra != "" {
		return fmt.Sprintf(" (%d replicas, %s)", len(rs), extra)
	}
	return fmt.Sprintf(" (%d replicas)", len(rs))
}

// replicasNote starts a figure's notes with the replicas and the agent
// streams each holds now; nothing for one control plane.
func replicasNote(ctx context.Context, rs harness.Replicas) string {
	if len(rs) <= 1 {
		return ""
	}
	note := fmt.Sprintf("%d replicas on one PostgreSQL, each agent starting at a random one", len(rs))
	if streams, err := rs.Streams(ctx); err == nil {
		note += " (agent streams " + perReplica(rs, func(i int) string { return thousands(int64(streams[i])) }) + ")"
	}
	return note + "; "
}

// perReplica formats one value per replica: "replica-1 x · replica-2 y".
func perReplica(rs harness.Replicas, value func(i int) string) string {
	parts := make([]string, len(rs))
	for i, c := range rs {
		parts[i] = c.Name() + " " + value(i)
	}
	return strings.Join(parts, " · ")
}

// cpuSpent is the CPU time each process used between two samples.
func cpuSpent(from, to []procfs.Sample) []time.Duration {
	out := make([]time.Duration, len(from))
	for i := range from {
		out[i] = to[i].CPU - from[i].CPU
	}
	return out
}

func sumDurations(ds []time.Duration) time.Duration {
	var t time.Duration
	for _, d := range ds {
		t += d
	}
	return t
}

// replicaCPUNote is each replica's median CPU over runs (byRun[run][replica]).
func replicaCPUNote(rs harness.Replicas, byRun [][]time.Duration) string {
	return perReplica(rs, func(i int) string {
		var xs []time.Duration
		for _, run := range byRun {
			xs = append(xs, run[i])
		}
		return stats.Millis(stats.Summarize(xs).P50)
	})
}

// replicaConnect is what connectReplicas measured.
type replicaConnect struct {
	interval, settle, window, took time.Duration
	// before is each replica's sample with an empty fleet; s0 and s1
	// bound the idle window.
	before, s0, s1 []procfs.Sample
	// streams are the agents on each replica after the window; connected
	// is the first replica's fleet view of them (ListAgents), seen
	// viewLag after the last stream opened, or viewErr.
	streams []int
	// rates are the heartbeats each replica counted per second over the
	// idle window (its /metrics, scraped around the CPU samples).
	rates     []float64
	connected int
	viewLag   time.Duration
	viewErr   error
	simProcs  int
	simRSS    int64
}

// connectReplicas is Connect on several replicas: the fleet spreads over
// them, and each replica's agents, memory per agent and idle CPU are
// measured from its own /metrics and /proc.
func connectReplicas(ctx context.Context, o Options) (figs []results.Figure, err error) {
	m := replicaConnect{interval: or(o.Interval, 10*time.Second)}
	m.settle = or(o.Settle, o.quick(m.interval, 2*m.interval))
	m.window = or(o.Window, o.quick(m.interval, 3*m.interval))
	env, err := o.env("connect")
	if err != nil {
		return nil, err
	}
	defer closeEnv(ctx, env, &err)
	rs, err := env.StartReplicas(ctx, harness.FleetConfig(o.CPLogLevel, m.interval), o.replicas())
	defer rs.Close()
	if err != nil {
		return nil, err
	}
	if err := sleep(ctx, 2*time.Second); err != nil {
		return nil, err
	}
	if m.before, err = rs.Sample(); err != nil {
		return nil, err
	}
	storeBefore, _, err := env.StoreSample()
	if err != nil {
		return nil, err
	}
	sims, took, err := o.startSims(ctx, env, rs, harness.SimConfig{Agents: o.Agents, HeartbeatInterval: m.interval})
	if err != nil {
		return nil, err
	}
	m.took = took
	registration, err := replicaRegistrationFigure(ctx, o, env, rs, m.before, storeBefore)
	if err != nil {
		return nil, err
	}
	m.viewLag, m.viewErr = rs.WaitFleetView(ctx, o.Agents, 30*time.Second)
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	env.Logf("settling for %s, then measuring idle CPU for %s", m.settle, m.window)
	if err := m.measureIdle(ctx, rs, sims); err != nil {
		return nil, err
	}
	if m.connected, err = rs[0].Connected(ctx); err != nil {
		return nil, err
	}
	return append(m.figures(ctx, o, rs), registration), nil
}

// measureIdle waits settle, samples every replica over window, then reads
// their streams and the simulators' memory.
func (m *replicaConnect) measureIdle(ctx context.Context, rs harness.Replicas, sims *harness.Sims) (err error) {
	if err := sleep(ctx, m.settle); err != nil {
		return err
	}
	h0, t0, err := rs.Scrape(ctx, heartbeatsMetric)
	if err != nil {
		return err
	}
	if m.s0, err = rs.Sample(); err != nil {
		return err
	}
	if err := sleep(ctx, m.window); err != nil {
		return err
	}
	if m.s1, err = rs.Sample(); err != nil {
		return err
	}
	h1, t1, err := rs.Scrape(ctx, heartbeatsMetric)
	if err != nil {
		return err
	}
	for i := range rs {
		m.rates = append(m.rates, (h1[i][heartbeatsMetric]-h0[i][heartbeatsMetric])/t1[i].Sub(t0[i]).Seconds())
	}
	if m.streams, err = rs.Streams(ctx); err != nil {
		return err
	}
	if err := sims.Check(); err != nil {
		return err
	}
	simSample, _ := sims.Sample()
	m.simProcs, m.simRSS = sims.Processes(), simSample.RSS
	return nil
}

// figures are connectReplicas' figures: each replica's agents, memory
// per agent and idle CPU, and the fleet's connection time.
func (m *replicaConnect) figures(ctx context.Context, o Options, rs harness.Replicas) []results.Figure {
	name := "connect" + replicasName(rs, "")
	total := sum(m.streams)
	perAgent := func(i int, from int64) float64 { return float64(m.s1[i].RSS-from) / float64(max(m.streams[i], 1)) }
	const rssTarget = 64 << 10
	var worstDelta, worstTotal float64
	for i := range rs {
		worstDelta = max(worstDelta, perAgent(i, m.before[i].RSS))
		worstTotal = max(worstTotal, perAgent(i, 0))
	}
	view := fmt.Sprintf("%s's fleet view (ListAgents) counted %s connected, %s after the last stream opened", rs[0].Name(), thousands(int64(m.connected)), stats.Seconds(m.viewLag))
	if m.viewErr != nil {
		view = m.viewErr.Error()
	}
	notes := fmt.Sprintf("%s%s%sheartbeat %s; start rate %s; %d simulator processes (RSS %s together); RSS before agents %s, after %s (each replica holds its own agents' streams and the whole fleet's records); measured after %s idle; %s",
		quickNote(o), replicasNote(ctx, rs), simNote(o), m.interval, startRate(o.StartRate), m.simProcs, mib(float64(m.simRSS)),
		perReplica(rs, func(i int) string { return mib(float64(m.before[i].RSS)) }),
		perReplica(rs, func(i int) string { return mib(float64(m.s1[i].RSS)) }), m.settle, view)
	return []results.Figure{
		{Name: name + ": agents connected (streams per replica)", Agents: o.Agents,
			Value:  fmt.Sprintf("%s of %s (%s)", thousands(int64(total)), thousands(int64(o.Agents)), perReplica(rs, func(i int) string { return thousands(int64(m.streams[i])) })),
			Target: "50,000 (stretch 100,000)", Met: atSize(o.Agents, 50000, total >= o.Agents && m.connected >= o.Agents), Notes: notes},
		{Name: name + ": time until all agents connected", Agents: o.Agents, Value: stats.Seconds(m.took),
			Target: "—", Met: results.NA, Notes: notes},
		{Name: name + ": RSS per agent per replica ((after − before) / its agents)", Agents: o.Agents,
			Value:  perReplica(rs, func(i int) string { return kib(perAgent(i, m.before[i].RSS)) }),
			Target: "≤ 64 KiB (stretch 32 KiB)", Met: results.MetIf(worstDelta <= rssTarget), Notes: notes},
		{Name: name + ": replica RSS / its agents (total)", Agents: o.Agents,
			Value:  perReplica(rs, func(i int) string { return kib(perAgent(i, 0)) }),
			Target: "≤ 64 KiB (stretch 32 KiB)", Met: results.MetIf(worstTotal <= rssTarget), Notes: notes},
		{Name: name + ": CPU while idle per replica (heartbeats only)", Agents: o.Agents,
			Value: perReplica(rs, func(i int) string {
				cores := procfs.CPUCores(m.s0[i], m.s1[i])
				return fmt.Sprintf("%.2f %% of a core for %s heartbeats/s (%.1f µs each)", cores*100, thousands(int64(m.rates[i]+0.5)), cores/max(m.rates[i], 1)*1e6)
			}),
			Target: "—", Met: results.NA,
			Notes: fmt.Sprintf("%s%sover %s; %.0f heartbeats/s offered in all; each replica's heartbeats from its /metrics, scraped around the CPU samples",
				quickNote(o), replicasNote(ctx, rs), m.window, float64(o.Agents)/m.interval.Seconds())},
	}
}

// replicaRegistrationFigure is registrationFigure for several replicas:
// their CPU together per agent from before the fleet started until every
// agent was connected, and the registrations each shed.
func replicaRegistrationFigure(ctx context.Context, o Options, env *harness.Env, rs harness.Replicas, before []procfs.Sample, storeBefore procfs.Sample) (results.Figure, error) {
	after, err := rs.Sample()
	if err != nil {
		return results.Figure{}, err
	}
	storeAfter, hasStore, err := env.StoreSample()
	if err != nil {
		return results.Figure{}, err
	}
	n := time.Duration(o.Agents)
	spent := cpuSpent(before, after)
	notes := fmt.Sprintf("%sfrom before the simulators started until every agent was connected (registration, then mTLS stream and first heartbeat); per replica %s",
		replicasNote(ctx, rs), perReplica(rs, func(i int) string { return stats.Millis(spent[i]/n) + " per agent of the fleet" }))
	if m, _, err := rs.Scrape(ctx, shedMetric); err == nil {
		notes += "; registration calls shed and retried " + perReplica(rs, func(i int) string { return fmt.Sprintf("%.0f", m[i][shedMetric]) })
	}
	cp := sumDurations(spent) / n
	if hasStore {
		server := (storeAfter.CPU - storeBefore.CPU) / n
		notes += fmt.Sprintf("; PostgreSQL server meanwhile %s per agent (together %s)", stats.Millis(server), stats.Millis(cp+server))
	}
	return results.Figure{Name: "connect" + replicasName(rs, "") + ": replicas' CPU per agent registered and connected", Agents: o.Agents,
		Value: stats.Millis(cp), Target: "—", Met: results.NA, Notes: notes}, nil
}

// replicaHeartbeats is one heartbeat window on several replicas: each
// replica's ingest rate (its own counter) and CPU.
type replicaHeartbeats struct {
	rates, cores []float64
	simRate      float64
	storeCores   float64
	hasStore     bool
}

// measureReplicaHeartbeats measures one heartbeat window on every replica:
// each /metrics scraped before and after it, the simulators' counters and
// each replica's (and a PostgreSQL server's) CPU read between the scrapes.
func measureReplicaHeartbeats(ctx context.Context, env *harness.Env, rs harness.Replicas, sims *harness.Sims, window time.Duration) (w replicaHeartbeats, err error) {
	m0, t0, err := rs.Scrape(ctx, heartbeatsMetric)
	if err != nil {
		return w, err
	}
	sim0, err := sims.Stats(ctx)
	if err != nil {
		return w, err
	}
	simAt0 := time.Now()
	c0, err := rs.Sample()
	if err != nil {
		return w, err
	}
	st0, _, err := env.StoreSample()
	if err != nil {
		return w, err
	}
	if err := sleep(ctx, window); err != nil {
		return w, err
	}
	c1, err := rs.Sample()
	if err != nil {
		return w, err
	}
	st1, hasStore, err := env.StoreSample()
	if err != nil {
		return w, err
	}
	sim1, err := sims.Stats(ctx)
	if err != nil {
		return w, err
	}
	simAt1 := time.Now()
	m1, t1, err := rs.Scrape(ctx, heartbeatsMetric)
	if err != nil {
		return w, err
	}
	if err := sims.Check(); err != nil {
		return w, err
	}
	for i := range rs {
		h0, ok0 := m0[i][heartbeatsMetric]
		h1, ok1 := m1[i][heartbeatsMetric]
		if !ok0 || !ok1 {
			return w, fmt.Errorf("%s: /metrics has no %s", rs[i].Name(), heartbeatsMetric)
		}
		w.rates = append(w.rates, (h1-h0)/t1[i].Sub(t0[i]).Seconds())
		w.cores = append(w.cores, procfs.CPUCores(c0[i], c1[i]))
	}
	w.simRate = float64(sim1.Heartbeats-sim0.Heartbeats) / simAt1.Sub(simAt0).Seconds()
	if hasStore {
		w.storeCores, w.hasStore = procfs.CPUCores(st0, st1), true
	}
	return w, nil
}

// replicaHeartbeatFigures judges a window on several replicas: each
// replica's rate and CPU, and each one's CPU scaled to the target rate,
// which is one control plane's.
func replicaHeartbeatFigures(ctx context.Context, o Options, rs harness.Replicas, interval, window time.Duration, w replicaHeartbeats) []results.Figure {
	offered := float64(o.Agents) / interval.Seconds()
	total, totalCores := 0.0, 0.0
	for i := range rs {
		total += w.rates[i]
		totalCores += w.cores[i]
	}
	const target = 20000
	met, scaledMet := results.NA, results.Yes
	worst := 0.0
	scaled := perReplica(rs, func(i int) string {
		if w.rates[i] <= 0 {
			scaledMet = results.No
			return "no heartbeats"
		}
		s := w.cores[i] * target / w.rates[i]
		worst = max(worst, s)
		return fmt.Sprintf("%.2f cores", s)
	})
	if worst > 1 {
		scaledMet = results.No
	}
	if offered >= target {
		met = results.MetIf(total >= 0.98*offered && worst <= 1)
	}
	notes := fmt.Sprintf("%s%s%sheartbeat %s (%.0f/s offered in all); window %s; simulators sent %.0f/s; CPU read between the two /metrics scrapes of each replica; CPU per heartbeat %s",
		quickNote(o), replicasNote(ctx, rs), simNote(o), interval, offered, window, w.simRate,
		perReplica(rs, func(i int) string { return fmt.Sprintf("%.1f µs", w.cores[i]/max(w.rates[i], 1)*1e6) }))
	if w.hasStore {
		notes += fmt.Sprintf("; PostgreSQL server meanwhile %.3f cores, %.1f µs per heartbeat (replicas and server together %.1f µs)",
			w.storeCores, w.storeCores/max(total, 1)*1e6, (totalCores+w.storeCores)/max(total, 1)*1e6)
	}
	name := "heartbeats" + replicasName(rs, "")
	return []results.Figure{
		{Name: name + ": ingest rate and CPU per replica", Agents: o.Agents,
			Value: fmt.Sprintf("%s/s on %.3f cores in all; %s", thousands(int64(total+0.5)), totalCores,
				perReplica(rs, func(i int) string {
					return fmt.Sprintf("%s/s on %.3f cores", thousands(int64(w.rates[i]+0.5)), w.cores[i])
				})),
			Target: "≥ 20,000/s on ≤ 1 core (one control plane's)", Met: met, Notes: notes},
		{Name: name + ": CPU per replica scaled to 20,000/s", Agents: o.Agents, Value: scaled,
			Target: "≤ 1 core", Met: scaledMet, Notes: notes + "; linear extrapolation from each replica's measured rate"},
	}
}

func sum(xs []int) int {
	t := 0
	for _, x := range xs {
		t += x
	}
	return t
}
