package rollout

import (
	"fmt"
	"time"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/controlplane/internal/fleet"
)

// gate is a host's health gate in progress. It lives in memory, but for
// the start of its healthy streak, which replica mode also stores
// (RolloutHost.HealthySince): a replica that takes the rollout over keeps
// counting the streak of an agent that stayed connected meanwhile. After a
// restart of a single control plane every agent reconnected, and the
// streak starts again (its deadline, from the stored step start, holds).
type gate struct {
	// restored is set for a streak read back from the store: it goes on
	// only if the agent did not reconnect since it began.
	restored bool
	// after is when the restart's success was heard; heartbeats before it
	// describe the old container. Zero after a restart of the control
	// plane: the step's start is used, which is later (and so safe).
	after time.Time
	// container is the new container's Docker ID, from the restart's
	// result; empty when unknown (after a takeover, or an agent that does
	// not report it).
	container string
	last      *flotillav1.Heartbeat // the last heartbeat looked at
	since     time.Time             // start of the current healthy streak; zero when not healthy
	until     time.Time             // the streak's latest healthy heartbeat
	why       string                // why the host was last not healthy
}

// checkHealth runs a host's health gate: it passes once the heartbeats
// received after the restart succeeded reported the application healthy
// without a break for min_healthy_time (from the first healthy heartbeat of
// the streak to the latest one, so silence never counts as health); an
// unhealthy heartbeat starts the count again. It fails at healthy_deadline,
// or when no heartbeat came for agent_lost_after.
//
// Heartbeats are sampled each time the runner looks (at least every
// TickInterval), so a short unhealthy spell between two looks can go
// unseen; the agents' heartbeat interval is the finer resolution.
func (r *runner) checkHealth(c *change, h *host) {
	minHealthy := r.strategy.GetMinHealthyTime().AsDuration()
	limit := r.strategy.GetHealthyDeadline().AsDuration()
	deadline := h.StepStartedAt.Add(limit)
	a, ok := r.e.cfg.Registry.Get(h.AgentID)
	if !ok {
		r.failHealth(c, h, "the agent is no longer registered")
		return
	}
	if r.startedAt.After(h.StepStartedAt) {
		// The gate began under a previous control-plane process, which
		// could not watch the heartbeats while it was down: give the agent
		// time to reconnect and show min_healthy_time of health again,
		// counted from when it came back (a large fleet reconnects over
		// a while); until it is back, only the silence limit below ends
		// the gate.
		back := r.startedAt
		if a.Record.ConnectedAt.After(back) {
			back = a.Record.ConnectedAt
		}
		if extended := back.Add(r.e.cfg.Registry.LostAfter() + minHealthy); extended.After(deadline) {
			deadline = extended
		}
		if waitBack := r.startedAt.Add(r.silenceLimit(r.startedAt)); !a.CurrentAt.After(r.startedAt) && waitBack.After(deadline) {
			deadline = waitBack
		}
	}
	// Heartbeats stop while the control plane is down: count silence from
	// when this process took the rollout at the earliest. An agent on
	// another replica is heard as far as that replica vouches for it
	// (CurrentAt: unchanged heartbeats are not written).
	ref := a.CurrentAt
	for _, t := range []time.Time{h.StepStartedAt, r.startedAt} {
		if t.After(ref) {
			ref = t
		}
	}
	if limit := r.silenceLimit(ref); c.now.Sub(ref) >= limit {
		r.failHealth(c, h, fmt.Sprintf("the agent %s (no heartbeat for %s) during the health gate", lostMessage, limit))
		return
	}
	r.observeHeartbeat(c, h, a)
	if !h.gate.since.IsZero() && h.gate.until.Sub(h.gate.since) >= minHealthy {
		if len(r.lbs) > 0 {
			r.enterUndrain(c, h, fmt.Sprintf("healthy for %s; putting it back into the load balancer", minHealthy))
			return
		}
		r.succeedHost(c, h)
		return
	}
	if !c.now.Before(deadline) {
		why := h.gate.why
		if why == "" {
			why = "no heartbeat since the restart reported the application's health"
		}
		r.failHealth(c, h, fmt.Sprintf("not healthy for %s within healthy_deadline %s (last: %s)", minHealthy, limit, why))
		return
	}
	c.wakeAt(deadline)
	c.wakeAt(c.now.Add(r.e.cfg.TickInterval))
}

// observeHeartbeat moves a host's healthy streak with the agent's latest
// heartbeat, if it is new and came after the restart.
func (r *runner) observeHeartbeat(c *change, h *host, a fleet.Agent) {
	after := h.gate.after
	if after.IsZero() {
		after = h.StepStartedAt
	}
	if h.gate.restored && a.Record.ConnectedAt.After(h.gate.since) {
		// The agent reconnected since the stored streak began: heartbeats
		// went unseen, so the streak starts again.
		h.gate.restored, h.gate.since = false, time.Time{}
		r.keepStreak(c, h)
	}
	hb := a.LastHeartbeat
	at := a.HeartbeatAt
	if hb == nil || at.Before(after) && !r.currentSinceRestart(h, a, after) {
		return
	}
	if at.Before(after) {
		at = after
	}
	if hb == h.gate.last {
		// Nothing new, or, from another replica, nothing that changed
		// the application's health: a healthy streak goes on as far as
		// the reading is known current.
		if !h.gate.since.IsZero() && a.CurrentAt.After(h.gate.until) {
			h.gate.until = a.CurrentAt
		}
		return
	}
	h.gate.last = hb
	if app := hb.GetApp(); app != nil && app.GetHealthy() {
		if h.gate.since.IsZero() {
			h.gate.since = at
			r.keepStreak(c, h)
		}
		h.gate.until = a.CurrentAt
		return
	}
	h.gate.since, h.gate.why, h.gate.restored = time.Time{}, unhealthyReason(hb), false
	r.keepStreak(c, h)
}

// keepStreak stores the start of a host's healthy streak (replica mode),
// so that a replica taking the rollout over goes on counting it.
func (r *runner) keepStreak(c *change, h *host) {
	if r.fence == nil || h.HealthySince.Equal(h.gate.since) {
		return
	}
	h.HealthySince = h.gate.since
	c.touch(h)
}

// failHealth fails a host at its health gate. It stays drained: no traffic
// goes to a host that is not healthy (a rollback, if any, restores it).
func (r *runner) failHealth(c *change, h *host, msg string) {
	msg = "health gate failed: " + msg
	switch {
	case len(r.lbs) == 0:
	case r.strategy.GetAutoRollback() && !h.RollingBack:
		// The rollback puts the host back on its previous image and
		// undrains it; until then no traffic reaches it.
		msg += "; drained until the automatic rollback restores its previous image"
	default:
		msg += leftDrained
	}
	r.fail(c, h, msg)
}

func unhealthyReason(hb *flotillav1.Heartbeat) string {
	app := hb.GetApp()
	switch {
	case app == nil:
		return "the agent reports no application health (is its health.url set?)"
	case app.GetError() != "":
		return app.GetError()
	default:
		return fmt.Sprintf("status %q, database %q, cache %q, HTTP %d", app.GetStatus(), app.GetDatabase(), app.GetCache(), app.GetHttpStatus())
	}
}

// silenceLimit is how long a host may stay silent counting from ref: the
// registry's reconnect grace when ref is when this process took the rollout
// and that was soon after the process started (every stream had just been
// dropped, and a large fleet takes a while to reconnect), agent_lost_after
// otherwise.
func (r *runner) silenceLimit(ref time.Time) time.Duration {
	reg := r.e.cfg.Registry
	if !ref.After(r.startedAt) && r.startedAt.Sub(reg.StartedAt()) < reg.ReconnectGrace() {
		return reg.ReconnectGrace()
	}
	return reg.LostAfter()
}

// currentSinceRestart reports whether a reading taken before the step
// began still holds from after on (replica mode): its agent's stream is on
// another replica, which writes a heartbeat again only when the
// application's health or the containers change, and vouches that the row
// is current up to a.CurrentAt; an agent that moved there before the step
// began (its replica died mid-restart) shows its attach's heartbeat only.
// The reading counts if it is known current past after and already shows
// the service's container running as the restart left it: on the restart's
// image and, when the result named it, with the container's ID, so that a
// redeploy of the same tag (a new container) does not count the one it
// replaced. A restart in place keeps its container's ID: a reading from
// before it can count until the agent's first heartbeat after it, which
// is written at once (a new start is a change) and decides from then on.
func (r *runner) currentSinceRestart(h *host, a fleet.Agent, after time.Time) bool {
	if !a.CurrentAt.After(after) {
		return false
	}
	want := r.restartImage(h)
	for _, ct := range a.LastHeartbeat.GetContainers() {
		if ct.GetName() != r.svc.GetContainer() {
			continue
		}
		if h.gate.container != "" && ct.GetContainerId() != h.gate.container {
			return false
		}
		return ct.GetImage() == want && ct.GetState() == "running"
	}
	return false
}
