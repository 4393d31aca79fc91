package scenario

import (
	"context"
	"fmt"
	"time"

	"flotilla.dev/bench/internal/harness"
	"flotilla.dev/bench/internal/results"
)

const heartbeatsMetric = "flotilla_heartbeats_received_total"

// Heartbeats measures heartbeat ingest: N agents at a short interval, the
// heartbeats the control plane counted per second over a window
// (flotilla_heartbeats_received_total) and the CPU it used meanwhile.
//
// /metrics carries series per agent, and a scrape of a large fleet costs
// the control plane CPU (and holds the registry's read lock while it
// streams). It is scraped once before and once after the window, and the
// CPU is read between the scrapes, so that the scrapes' cost stays out
// of the CPU figure.
func Heartbeats(ctx context.Context, o Options) (figs []results.Figure, err error) {
	interval := or(o.Interval, time.Second)
	window := or(o.Window, o.quick(10*time.Second, 30*time.Second))
	env, err := o.env("heartbeats")
	if err != nil {
		return nil, err
	}
	defer closeEnv(ctx, env, &err)
	rs, sims, _, err := o.fleet(ctx, env, harness.SimConfig{Agents: o.Agents, HeartbeatInterval: interval})
	defer rs.Close()
	if err != nil {
		return nil, err
	}
	// Let every agent's heartbeat loop reach its steady pace.
	if err := sleep(ctx, 2*interval+3*time.Second); err != nil {
		return nil, err
	}
	env.Logf("measuring for %s", window)
	if len(rs) > 1 {
		ws, err := measureReplicaHeartbeats(ctx, env, rs, sims, window)
		if err != nil {
			return nil, err
		}
		return replicaHeartbeatFigures(ctx, o, rs, interval, window, ws), nil
	}
	w, err := measureHeartbeats(ctx, env, rs[0], sims, window)
	if err != nil {
		return nil, err
	}
	return heartbeatFigures(o, interval, window, w), nil
}

// heartbeatWindow is what one window measured: the heartbeats the control
// plane counted per second, those the simulators sent per second, and the
// cores the control plane used.
type heartbeatWindow struct {
	rate, simRate, cores float64
	// storeCores is what a PostgreSQL server used meanwhile (hasStore);
	// on SQLite the store's work is in cores.
	storeCores float64
	hasStore   bool
}

// measureHeartbeats measures one window on one control plane: it is
// measureReplicaHeartbeats on a set of one.
func measureHeartbeats(ctx context.Context, env *harness.Env, cp *harness.ControlPlane, sims *harness.Sims, window time.Duration) (heartbeatWindow, error) {
	r, err := measureReplicaHeartbeats(ctx, env, harness.Replicas{cp}, sims, window)
	if err != nil {
		return heartbeatWindow{}, err
	}
	return heartbeatWindow{rate: r.rates[0], simRate: r.simRate, cores: r.cores[0], storeCores: r.storeCores, hasStore: r.hasStore}, nil
}

// heartbeatFigures judges a window: the ingest rate and CPU, and the CPU
// scaled to the target rate.
func heartbeatFigures(o Options, interval, window time.Duration, w heartbeatWindow) []results.Figure {
	rate, cores := w.rate, w.cores
	offered := float64(o.Agents) / interval.Seconds()

	// The ingest target is judged only when the fleet offers 20,000/s
	// (20,000 agents at the 1 s minimum interval): the control plane must
	// then take in what is offered (2 % slack for the agents' timer
	// drift) on at most one core. Smaller fleets are judged by the
	// scaled CPU figure below.
	const target = 20000
	met := results.NA
	if offered >= target {
		met = results.MetIf(rate >= 0.98*offered && cores <= 1)
	}
	notes := fmt.Sprintf("%sheartbeat %s (%.0f/s offered); window %s; simulators sent %.0f/s; CPU read between the two /metrics scrapes",
		quickNote(o)+simNote(o), interval, offered, window, w.simRate) + perHeartbeatNote(w)
	figs := []results.Figure{
		{Name: "heartbeats: ingest rate and control-plane CPU", Agents: o.Agents,
			Value:  fmt.Sprintf("%s/s on %.3f cores", thousands(int64(rate+0.5)), cores),
			Target: "≥ 20,000/s on ≤ 1 core", Met: met, Notes: notes},
	}
	if rate > 0 {
		// Linear in the rate: fixed costs (timers, GC of an idle heap)
		// are scaled up too, so this overestimates a small run's cost.
		scaled := cores * target / rate
		figs = append(figs, results.Figure{
			Name: "heartbeats: control-plane CPU scaled to 20,000/s", Agents: o.Agents,
			Value:  fmt.Sprintf("%.2f cores", scaled),
			Target: "≤ 1 core", Met: results.MetIf(scaled <= 1),
			Notes: notes + "; linear extrapolation from the measured rate",
		})
	}
	return figs
}

// perHeartbeatNote is the CPU each heartbeat cost: the control plane's
// and, on PostgreSQL, the server's, measured over the same window.
func perHeartbeatNote(w heartbeatWindow) string {
	if w.rate <= 0 {
		return ""
	}
	perBeat := func(cores float64) float64 { return cores / w.rate * 1e6 }
	note := fmt.Sprintf("; CPU per heartbeat: control plane %.1f µs", perBeat(w.cores))
	if w.hasStore {
		note += fmt.Sprintf("; PostgreSQL server meanwhile %.3f cores, %.1f µs per heartbeat (together %.1f µs)",
			w.storeCores, perBeat(w.storeCores), perBeat(w.cores+w.storeCores))
	}
	return note
}
