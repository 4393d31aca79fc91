package rollout

import (
	"context"
	"time"

	"go.uber.org/zap"

	"flotilla.dev/controlplane/internal/fleet"
	"flotilla.dev/controlplane/internal/store"
)

// DefaultReconnectGrace is Config.ReconnectGrace when left out: an agent
// reconnects at once after its stream closes (the rebalancer's shedding,
// a replica's death), within a TLS handshake and a few seconds of
// backoff at worst.
const DefaultReconnectGrace = 10 * time.Second

// reconnectPoll is how often a start waiting for reconnecting hosts looks
// at them again.
const reconnectPoll = 100 * time.Millisecond

// reconnecting reports whether the agent had a stream that closed less
// than grace before now: it is on its way back, not offline. An agent
// that never connected, or left long ago, is not waited for.
func reconnecting(a fleet.Agent, now time.Time, grace time.Duration) bool {
	rec := a.Record
	return rec.State == store.AgentDisconnected && !rec.ConnectedAt.IsZero() &&
		rec.DeregisteredAt.IsZero() && now.Sub(rec.StateChangedAt) < grace
}

// awaitReconnecting waits until none of agents is reconnecting, or at
// most until ReconnectGrace has passed since the last of them
// disconnected, and returns the agents as the registry then shows them.
// A plan made the moment the rebalancer moved a host to another replica
// would otherwise leave the host out as offline (OFFLINE_POLICY_SKIP), or
// refuse the start (FAIL), for a disconnection of a second.
func (e *Engine) awaitReconnecting(ctx context.Context, agents []fleet.Agent) ([]fleet.Agent, error) {
	grace := e.cfg.ReconnectGrace
	if grace < 0 {
		return agents, nil
	}
	now := e.cfg.Now()
	var until time.Time
	waiting := 0
	for _, a := range agents {
		if reconnecting(a, now, grace) {
			waiting++
			if back := a.Record.StateChangedAt.Add(grace); back.After(until) {
				until = back
			}
		}
	}
	if waiting == 0 {
		return agents, nil
	}
	began := time.Now()
	deadline := time.NewTimer(until.Sub(now))
	defer deadline.Stop()
	poll := time.NewTicker(reconnectPoll)
	defer poll.Stop()
	for {
		timedOut := false
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-deadline.C:
			timedOut = true
		case <-poll.C:
		}
		left := 0
		for i, a := range agents {
			if cur, ok := e.cfg.Registry.Get(a.Record.ID); ok {
				agents[i] = cur
			}
			if agents[i].Record.State == store.AgentDisconnected && reconnecting(a, now, grace) {
				left++
			}
		}
		if left == 0 || timedOut {
			e.log.Info("waited for reconnecting hosts before planning", zap.Int("hosts", waiting), zap.Int("still_offline", left),
				zap.Duration("waited", time.Since(began)))
			return agents, nil
		}
	}
}
