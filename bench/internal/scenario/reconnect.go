package scenario

import (
	"context"
	"fmt"
	"sync"
	"time"

	"flotilla.dev/bench/internal/harness"
	"flotilla.dev/bench/internal/results"
	"flotilla.dev/bench/internal/stats"
	flotillav1 "flotilla.dev/gen/flotilla/v1"
)

// Reconnect restarts the control plane under a connected fleet (SIGTERM,
// then a new process on the same data directory) and measures the time
// until every agent is connected again, while an operator calls
// ListAgents (a page of 100) and GetAgent in a loop.
func Reconnect(ctx context.Context, o Options) (figs []results.Figure, err error) {
	o.Replicas = 1 // one control plane, restarted (with `all -replicas`, the others run several)
	env, err := o.env("reconnect")
	if err != nil {
		return nil, err
	}
	defer closeEnv(ctx, env, &err)
	rs, sims, _, err := o.fleet(ctx, env, harness.SimConfig{Agents: o.Agents, MaxBackoff: o.MaxBackoff})
	defer rs.Close()
	if err != nil {
		return nil, err
	}
	cp := rs[0]
	if err := sleep(ctx, o.quick(2*time.Second, 10*time.Second)); err != nil {
		return nil, err
	}
	page, err := cp.Fleet.ListAgents(ctx, &flotillav1.ListAgentsRequest{PageSize: 100})
	if err != nil {
		return nil, fmt.Errorf("ListAgents: %w", err)
	}
	var ids []string
	for _, a := range page.GetAgents() {
		ids = append(ids, a.GetId())
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("ListAgents returned no agents of %d", o.Agents)
	}

	env.Logf("restarting the control plane")
	r, err := cp.Restart(ctx)
	if err != nil {
		return nil, err
	}
	env.Logf("stopped in %s, serving again %s after start", r.Exited.Sub(r.Signalled).Round(time.Millisecond), r.Ready.Sub(r.Started).Round(time.Millisecond))

	loopCtx, stopLoop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var lat apiLatencies
	wg.Go(func() { lat.run(loopCtx, cp, ids) })
	at, err := cp.WaitConnected(ctx, o.Agents, o.connectTimeout(), sims.Check)
	stopLoop()
	wg.Wait()
	if err != nil {
		return nil, err
	}
	fromStart, fromSignal := at.Sub(r.Started), at.Sub(r.Signalled)
	list, get := stats.Summarize(lat.list), stats.Summarize(lat.get)
	backoff := "agent default (30 s cap)"
	if o.MaxBackoff > 0 {
		backoff = o.MaxBackoff.String() + " cap"
	}
	notes := fmt.Sprintf("%sreconnection backoff: %s; SIGTERM→exit %s, start→serving %s, SIGTERM→all back %s",
		quickNote(o), backoff, stats.Seconds(r.Exited.Sub(r.Signalled)), stats.Seconds(r.Ready.Sub(r.Started)), stats.Seconds(fromSignal))
	apiNotes := fmt.Sprintf("%scalled in a loop, on an established operator connection, from the new process serving until all agents were back; %d errors",
		quickNote(o), lat.errors)
	const apiTarget = 100 * time.Millisecond
	figs = []results.Figure{
		{Name: "reconnect: all agents back after a control-plane restart (from the new process's start)", Agents: o.Agents,
			Value: stats.Seconds(fromStart), Target: "≤ 60 s at 10,000", Met: atSize(o.Agents, 10000, fromStart <= time.Minute), Notes: notes},
		{Name: "reconnect: ListAgents (page of 100) latency meanwhile", Agents: o.Agents, Value: list.String(),
			Target: "p99 ≤ 100 ms at 10,000", Met: atSize(o.Agents, 10000, list.N > 0 && list.P99 <= apiTarget && lat.errors == 0), Notes: apiNotes},
		{Name: "reconnect: GetAgent latency meanwhile", Agents: o.Agents, Value: get.String(),
			Target: "p99 ≤ 100 ms at 10,000", Met: atSize(o.Agents, 10000, get.N > 0 && get.P99 <= apiTarget && lat.errors == 0), Notes: apiNotes},
	}
	return figs, nil
}

// apiLatencies are an operator's calls timed while the fleet reconnects.
type apiLatencies struct {
	list, get []time.Duration
	errors    int
}

// run alternates ListAgents and GetAgent until ctx ends. Calls cut short
// by the end of ctx are not counted.
func (l *apiLatencies) run(ctx context.Context, cp *harness.ControlPlane, ids []string) {
	for i := 0; ctx.Err() == nil; i++ {
		callCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		t := time.Now()
		_, err := cp.Fleet.ListAgents(callCtx, &flotillav1.ListAgentsRequest{PageSize: 100})
		d := time.Since(t)
		cancel()
		l.record(ctx, &l.list, d, err)

		callCtx, cancel = context.WithTimeout(ctx, 10*time.Second)
		t = time.Now()
		_, err = cp.Fleet.GetAgent(callCtx, &flotillav1.GetAgentRequest{AgentId: ids[i%len(ids)]})
		d = time.Since(t)
		cancel()
		l.record(ctx, &l.get, d, err)
	}
}

func (l *apiLatencies) record(ctx context.Context, into *[]time.Duration, d time.Duration, err error) {
	switch {
	case ctx.Err() != nil:
	case err != nil:
		l.errors++
	default:
		*into = append(*into, d)
	}
}
