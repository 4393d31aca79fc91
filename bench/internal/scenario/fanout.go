package scenario

import (
	"context"
	"fmt"
	"strings"
	"time"

	"flotilla.dev/bench/internal/harness"
	"flotilla.dev/bench/internal/results"
	"flotilla.dev/bench/internal/stats"
	flotillav1 "flotilla.dev/gen/flotilla/v1"
)

// fanoutLabel is the label every simulated agent carries, so that one
// selector targets the whole fleet.
const fanoutLabel = "bench=fanout"

// Fanout measures a command fanned out to the whole fleet at once: a
// pull of a new image tag to every agent (max_concurrency unset: all
// hosts are released at once), timed from just before the RunCommand call
// to each agent's receipt (the simulator's clock: when the agent admitted
// the command) and to each host's started_at (the control plane's clock:
// when the agent's RUNNING report arrived).
func Fanout(ctx context.Context, o Options) (figs []results.Figure, err error) {
	runs := or(o.Runs, o.quickN(2, 5))
	env, err := o.env("fanout")
	if err != nil {
		return nil, err
	}
	defer closeEnv(ctx, env, &err)
	rs, sims, _, err := o.fleet(ctx, env, harness.SimConfig{Agents: o.Agents, Labels: fanoutLabel})
	defer rs.Close()
	if err != nil {
		return nil, err
	}
	if err := sleep(ctx, 2*time.Second); err != nil {
		return nil, err
	}
	var receipts, started []time.Duration
	var calls, cpCPU, simCPU, storeCPU []time.Duration
	var byReplica [][]time.Duration
	var failed int
	var failures []string
	worst := stats.Summary{}
	for i := range runs {
		r, err := fanoutOnce(ctx, env, rs, sims, o.Agents, fmt.Sprintf("registry.sim/bench:fanout-%d-%d", time.Now().UnixNano(), i))
		if err != nil {
			return nil, fmt.Errorf("run %d: %w", i+1, err)
		}
		run := stats.Summarize(r.receipts)
		env.Logf("run %d: RunCommand returned after %s; receipt %s; started_at %s; CPU until all finished: control plane %s, simulators %s", i+1,
			stats.Millis(r.call), run, stats.Summarize(r.started), stats.Millis(r.cpCPU), stats.Millis(r.simCPU))
		if run.P99 > worst.P99 {
			worst = run
		}
		receipts = append(receipts, r.receipts...)
		started = append(started, r.started...)
		calls = append(calls, r.call)
		cpCPU, simCPU = append(cpCPU, r.cpCPU), append(simCPU, r.simCPU)
		byReplica = append(byReplica, r.cpByReplica)
		if r.hasStore {
			storeCPU = append(storeCPU, r.storeCPU)
		}
		failed += r.failed
		failures = append(failures, r.failures...)
		// Let the fleet's reports drain before the next run.
		if err := sleep(ctx, time.Second); err != nil {
			return nil, err
		}
	}
	rsum, ss, cs := stats.Summarize(receipts), stats.Summarize(started), stats.Summarize(calls)
	notes := fmt.Sprintf("%s%s%d runs pooled; worst run's p99 %s; RunCommand call took p50 %s, max %s; CPU per run until every host finished: control plane p50 %s, simulators p50 %s; simulated pull latency 0",
		quickNote(o), replicasNote(ctx, rs)+simNote(o), runs, stats.Millis(worst.P99), stats.Millis(cs.P50), stats.Millis(cs.Max),
		stats.Millis(stats.Summarize(cpCPU).P50), stats.Millis(stats.Summarize(simCPU).P50))
	if len(rs) > 1 {
		notes += "; control-plane CPU per run by replica p50 " + replicaCPUNote(rs, byReplica)
	}
	if len(storeCPU) > 0 {
		notes += fmt.Sprintf("; PostgreSQL server CPU per run p50 %s", stats.Millis(stats.Summarize(storeCPU).P50))
	}
	if failed > 0 {
		notes += fmt.Sprintf("; %d host commands did not succeed, e.g. %s", failed, failures[0])
	}
	const target = time.Second
	figs = []results.Figure{
		{Name: "fanout" + replicasName(rs, "RunCommand on "+rs[0].Name()) + ": RunCommand → agent receipt (simulator clock)", Agents: o.Agents, Value: rsum.String(),
			Target: "p99 ≤ 1 s (stretch 500 ms) at 10,000", Met: atSize(o.Agents, 10000, rsum.P99 <= target), Notes: notes},
		{Name: "fanout" + replicasName(rs, "RunCommand on "+rs[0].Name()) + ": RunCommand → host started_at (control-plane clock)", Agents: o.Agents, Value: ss.String(),
			Target: "p99 ≤ 1 s (stretch 500 ms) at 10,000", Met: atSize(o.Agents, 10000, ss.P99 <= target), Notes: notes},
	}
	return figs, nil
}

// fanoutRun is what one fan-out measured.
type fanoutRun struct {
	call              time.Duration
	receipts, started []time.Duration
	// cpCPU and simCPU are the CPU time the control plane and the
	// simulators spent from the call until every host had finished: who
	// the two shared cores worked for.
	cpCPU, simCPU time.Duration
	// cpByReplica is cpCPU replica by replica.
	cpByReplica []time.Duration
	// storeCPU is the PostgreSQL server's over the same span (hasStore).
	storeCPU time.Duration
	hasStore bool
	// failed counts hosts that did not succeed; failures describe a few.
	failed   int
	failures []string
}

// fanoutOnce runs one pull of image on the whole fleet of n agents and
// measures it: the call, each agent's receipt, each host's started_at, and
// the CPU both sides spent until every host finished. The command is
// run on the first control plane; with replicas, the CPU is theirs
// together.
func fanoutOnce(ctx context.Context, env *harness.Env, rs harness.Replicas, sims *harness.Sims, n int, image string) (fanoutRun, error) {
	var r fanoutRun
	cp := rs[0]
	base, err := sims.Stats(ctx)
	if err != nil {
		return r, err
	}
	cp0, err := rs.Sample()
	if err != nil {
		return r, err
	}
	sim0, err := sims.Sample()
	if err != nil {
		return r, err
	}
	st0, _, err := env.StoreSample()
	if err != nil {
		return r, err
	}
	t0 := time.Now()
	id, err := runFanoutCommand(ctx, cp, n, image)
	r.call = time.Since(t0)
	if err != nil {
		return r, err
	}
	// Every agent received it: the simulators count receipts.
	deadline := time.Now().Add(2 * time.Minute)
	if err := waitSims(ctx, sims, deadline, 50*time.Millisecond, func(st harness.SimSnapshot) error {
		if got := st.ReceivedTotal() - base.ReceivedTotal(); got < int64(n) {
			return fmt.Errorf("command %s: %d of %d agents received it within 2m", id, got, n)
		}
		return nil
	}); err != nil {
		return r, err
	}
	// Every agent finished it (the simulators count outcomes), before the
	// control plane is asked: GetCommand of a large command is heavy,
	// and polling it while the agents' reports arrive would slow the
	// very reports whose started_at is measured.
	if err := waitSims(ctx, sims, deadline, 100*time.Millisecond, func(st harness.SimSnapshot) error {
		if got := st.Succeeded + st.Failed - base.Succeeded - base.Failed; got < int64(n) {
			return fmt.Errorf("command %s: %d of %d agents finished it within 2m", id, got, n)
		}
		return nil
	}); err != nil {
		return r, err
	}
	cp1, err := rs.Sample()
	if err != nil {
		return r, err
	}
	sim1, err := sims.Sample()
	if err != nil {
		return r, err
	}
	st1, hasStore, err := env.StoreSample()
	if err != nil {
		return r, err
	}
	r.cpByReplica = cpuSpent(cp0, cp1)
	r.cpCPU, r.simCPU = sumDurations(r.cpByReplica), sim1.CPU-sim0.CPU
	r.storeCPU, r.hasStore = st1.CPU-st0.CPU, hasStore
	fc, err := waitCommandEnded(ctx, cp, id, deadline)
	if err != nil {
		return r, err
	}
	r.recordHosts(env, fc, t0)
	times, err := sims.Receipts(ctx, image)
	if err != nil {
		return r, err
	}
	if len(times) != n {
		return r, fmt.Errorf("command %s: %d receipts recorded, want %d", id, len(times), n)
	}
	for _, ns := range times {
		r.receipts = append(r.receipts, time.Unix(0, ns).Sub(t0))
	}
	env.Logf("command %s: %d of %d hosts succeeded", id, len(fc.GetHosts())-r.failed, len(fc.GetHosts()))
	return r, nil
}

// runFanoutCommand calls RunCommand: a pull of image on every agent, all
// at once, answered with the counts; it checks the command targets n hosts
// and returns its ID.
func runFanoutCommand(ctx context.Context, cp *harness.ControlPlane, n int, image string) (string, error) {
	callCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	resp, err := cp.Fleet.RunCommand(callCtx, &flotillav1.RunCommandRequest{
		Spec:     &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Pull{Pull: &flotillav1.PullCommand{Image: image}}},
		Selector: fanoutLabel, Reason: "flotilla-bench fanout",
		// All at once, whatever the default.
		MaxConcurrency: &flotillav1.Limit{Kind: &flotillav1.Limit_Percent{Percent: 100}},
		// The counts, not 10,000 host entries: what an operator
		// commanding a large fleet asks for.
		View: flotillav1.CommandView_COMMAND_VIEW_SUMMARY,
	})
	if err != nil {
		return "", fmt.Errorf("RunCommand: %w", err)
	}
	id := resp.GetCommand().GetId()
	var targets int32
	for _, c := range resp.GetCommand().GetSummary() {
		targets += c
	}
	if targets != int32(n) {
		return "", fmt.Errorf("command %s targets %d hosts, want %d", id, targets, n)
	}
	return id, nil
}

// waitSims polls the simulators' counters every interval until pending
// returns nil, and fails with pending's error once deadline has passed.
func waitSims(ctx context.Context, sims *harness.Sims, deadline time.Time, interval time.Duration,
	pending func(harness.SimSnapshot) error) error {
	for {
		st, err := sims.Stats(ctx)
		if err != nil {
			return err
		}
		if err := pending(st); err == nil {
			return nil
		} else if time.Now().After(deadline) {
			return err
		}
		if err := sleep(ctx, interval); err != nil {
			return err
		}
	}
}

// waitCommandEnded polls GetCommand until every host reported (the
// command is no longer running), until deadline.
func waitCommandEnded(ctx context.Context, cp *harness.ControlPlane, id string, deadline time.Time) (*flotillav1.FleetCommand, error) {
	for {
		getCtx, cancel := context.WithTimeout(ctx, time.Minute)
		got, err := cp.Fleet.GetCommand(getCtx, &flotillav1.GetCommandRequest{CommandId: id})
		cancel()
		if err != nil {
			return nil, fmt.Errorf("GetCommand %s: %w", id, err)
		}
		fc := got.GetCommand()
		if fc.GetState() != flotillav1.FleetCommandState_FLEET_COMMAND_STATE_RUNNING {
			return fc, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("command %s still running after 2m: %v", id, fc.GetSummary())
		}
		if err := sleep(ctx, 500*time.Millisecond); err != nil {
			return nil, err
		}
	}
}

// recordHosts records each host's started_at after t0, and counts and
// describes the hosts that did not succeed: reported, not fatal, for
// their receipt was counted and the latency of the others still stands.
func (r *fanoutRun) recordHosts(env *harness.Env, fc *flotillav1.FleetCommand, t0 time.Time) {
	for _, h := range fc.GetHosts() {
		if h.GetState() != flotillav1.CommandState_COMMAND_STATE_SUCCEEDED {
			r.failed++
			if len(r.failures) < 3 {
				r.failures = append(r.failures, fmt.Sprintf("%s %s: %s", h.GetAgentId(),
					strings.ToLower(strings.TrimPrefix(h.GetState().String(), "COMMAND_STATE_")), h.GetMessage()))
			}
		}
		if h.GetStartedAt() != nil {
			r.started = append(r.started, h.GetStartedAt().AsTime().Sub(t0))
		}
	}
	if r.failed > 0 {
		env.Logf("command %s ended %s: %v; for example %s", fc.GetId(), fc.GetState(), fc.GetSummary(), strings.Join(r.failures, "; "))
	}
}
