package fleet

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"flotilla.dev/controlplane/internal/store"
	"flotilla.dev/pkg/logging"
	"flotilla.dev/pkg/run"
)

// leadState is what the fleet leader remembers between sweeps.
type leadState struct {
	mu sync.Mutex
	// since is when this replica's current term as leader began (by the
	// registry's clock); zero while it does not lead.
	since time.Time
	// lastLive is when this term last saw each replica live.
	lastLive map[string]time.Time
}

// RunFleetLiveness runs SweepFleet every sweep interval until ctx ends
// (replica mode; it only waits otherwise).
func (r *Registry) RunFleetLiveness(ctx context.Context) error {
	if !r.replicaMode() {
		<-ctx.Done()
		return nil
	}
	return run.Every(ctx, r.sweepInterval(), func(ctx context.Context) {
		if err := r.SweepFleet(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn("fleet liveness sweep failed; will retry", zap.Error(err))
		}
	})
}

// SweepFleet marks lost, while this replica leads the fleet, every agent
// that no live replica holds and that has not been heard from for
// LostAfter plus one flush interval (the time a replica it reconnected to
// may take to write so): its last heartbeat as stored, or the last time
// this leader saw its replica live (the start of this term if it never
// did), whichever is later. Agents not heard from since before this
// process started get ReconnectGrace from its start, as after a restart. The mark is a compare-and-set on each agent's
// status_seq as this replica last read it, so a reconnect written
// meanwhile wins; the marked rows are read back at once.
func (r *Registry) SweepFleet(ctx context.Context) error {
	if !r.replicaMode() {
		return nil
	}
	r.lead.mu.Lock()
	defer r.lead.mu.Unlock()
	if !r.Leading() {
		r.lead.since, r.lead.lastLive = time.Time{}, nil
		return nil
	}
	now := r.cfg.Now()
	if r.lead.since.IsZero() {
		r.lead.since, r.lead.lastLive = now, make(map[string]time.Time)
		r.log.Info("leading the fleet: marking lost the agents no replica holds")
	}
	leases, err := r.cfg.Replica.Leases.LiveLeases(ctx, r.cfg.Replica.LeasePrefix)
	if err != nil {
		return fmt.Errorf("fleet: list live replicas: %w", err)
	}
	live := make(map[string]bool, len(leases))
	for _, l := range leases {
		holder := strings.TrimPrefix(l.Name, r.cfg.Replica.LeasePrefix)
		live[holder] = true
		r.lead.lastLive[holder] = now
	}
	losses := r.fleetLosses(live, now)
	if len(losses) == 0 {
		return nil
	}
	marked, err := r.cfg.Store.MarkAgentsLost(ctx, losses, now)
	if err != nil {
		return fmt.Errorf("fleet: mark %d agents lost: %w", len(losses), err)
	}
	reasons := make(map[string]string, len(losses))
	for _, l := range losses {
		reasons[l.ID] = l.Reason
	}
	for _, id := range marked {
		r.log.Info("agent lost", logging.AgentID(id), zap.String("reason", reasons[id]))
		r.markedLost(id, reasons[id], now)
	}
	if len(marked) > 0 {
		return r.Refresh(ctx)
	}
	return nil
}

// markedLost applies to this replica's view a loss the leader just stored,
// without waiting for the next refresh. An agent that attached here
// between the reading and the write was lost and is back already: its
// attach, flushed next, finds it lost in the store and tells it back
// (toldBack).
func (r *Registry) markedLost(id, reason string, now time.Time) {
	r.mu.Lock()
	e, ok := r.agents[id]
	hostname := ""
	if ok {
		hostname = e.rec.Hostname
		if e.session == nil {
			e.rec.State, e.rec.StateReason, e.rec.StateChangedAt = store.AgentLost, reason, now
		}
	}
	r.mu.Unlock()
	if fn := r.cfg.OnStateChange; fn != nil {
		fn(StateChange{AgentID: id, Hostname: hostname, To: store.AgentLost, Reason: reason, At: now})
	}
}

// fleetLosses lists the agents to mark lost (see SweepFleet), with the
// status_seq this replica last read of each.
func (r *Registry) fleetLosses(live map[string]bool, now time.Time) []store.AgentLoss {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var losses []store.AgentLoss
	for id, e := range r.agents {
		if e.session != nil || e.rec.State == store.AgentLost {
			continue
		}
		if _, pending := r.dirty[id]; pending {
			continue
		}
		holder := e.rec.StreamHolder
		if holder != "" && live[holder] {
			continue
		}
		since := e.rec.LastSeenAt
		if e.rec.RegisteredAt.After(since) {
			since = e.rec.RegisteredAt
		}
		if holder != "" {
			// Its replica was live until lastLive, or, if this term never
			// saw it live, at most until the term began.
			seen, ok := r.lead.lastLive[holder]
			if !ok {
				seen = r.lead.since
			}
			if seen.After(since) {
				since = seen
			}
		}
		limit := r.cfg.LostAfter
		if since.Before(r.startedAt) {
			since, limit = r.startedAt, r.cfg.ReconnectGrace
		}
		if now.Sub(since) < limit+r.cfg.FlushInterval {
			continue
		}
		reason := fmt.Sprintf("no stream on any control plane and no heartbeat for %s", limit)
		if holder != "" {
			reason = fmt.Sprintf("control plane %s holding its stream is gone, and no heartbeat for %s", holder, limit)
		}
		losses = append(losses, store.AgentLoss{ID: id, StatusSeq: e.rec.StatusSeq, Reason: reason})
	}
	return losses
}
