package fleet

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"flotilla.dev/pkg/run"

	"flotilla.dev/controlplane/internal/store"
)

// sweepInterval is how often liveness is evaluated: a tenth of LostAfter,
// between 100ms and 1s, so a loss is noticed within about LostAfter+1s.
func (r *Registry) sweepInterval() time.Duration {
	return min(max(r.cfg.LostAfter/10, 100*time.Millisecond), time.Second)
}

// RunLiveness evaluates every agent's liveness on one ticker until ctx ends.
// One loop for the whole fleet, instead of a timer per agent, keeps the cost
// per agent at a comparison per tick.
func (r *Registry) RunLiveness(ctx context.Context) error {
	return run.Every(ctx, r.sweepInterval(), func(context.Context) { r.Sweep() })
}

// Sweep applies the liveness rules once:
//   - connected, but no message for LostAfter: the connection is half-open
//     or partitioned; the stream is closed and the agent is lost;
//   - disconnected for LostAfter (counted from the latest of its last message,
//     its registration and this process's start; ReconnectGrace when nothing
//     was heard from it since this process started): lost.
func (r *Registry) Sweep() {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.cfg.Now() // under the lock: see Flush
	for _, e := range r.agents {
		if e.session == nil && r.replicaMode() {
			// Held by another replica, or by none: the fleet leader
			// decides (see RunFleetLiveness).
			continue
		}
		switch e.rec.State {
		case store.AgentConnected:
			if now.Sub(e.rec.LastSeenAt) >= r.cfg.LostAfter {
				if e.session != nil {
					e.session.close(ErrLost)
					e.session = nil
				}
				r.setState(e, store.AgentLost, fmt.Sprintf("stream open but no heartbeat for %s; stream closed", r.cfg.LostAfter), now)
			}
		case store.AgentDisconnected, "":
			since, limit := e.rec.LastSeenAt, r.cfg.LostAfter
			if since.Before(r.startedAt) {
				since, limit = r.startedAt, r.cfg.ReconnectGrace
			}
			if since.Before(e.rec.RegisteredAt) {
				since, limit = e.rec.RegisteredAt, r.cfg.LostAfter
			}
			if now.Sub(since) >= limit {
				r.setState(e, store.AgentLost, fmt.Sprintf("no stream and no heartbeat for %s", limit), now)
			}
		}
	}
}

// RunFlusher writes pending status changes to the store every
// FlushInterval, and once more when ctx ends.
func (r *Registry) RunFlusher(ctx context.Context) error {
	_ = run.Every(ctx, r.cfg.FlushInterval, func(ctx context.Context) {
		if err := r.Flush(ctx); err != nil && ctx.Err() == nil {
			// The store being briefly unavailable must not take the
			// control plane down; the changes stay pending.
			r.log.Warn("writing agent status to the store failed; will retry", zap.Error(err))
		}
	})
	// Final flush on shutdown with a fresh deadline: the caller's context
	// is already cancelled.
	fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return r.Flush(fctx)
}

// Flush writes every pending status change, in transactions of at most
// maxFlushBatch agents. On failure the changes not written stay pending for
// the next flush. A replica then publishes how far its writes are complete
// (publishFlushed): every change stamped before the flush took the pending
// changes. That holds because the changes are stamped with the clock read
// under the registry's lock (Heartbeat, Attach, Detach, Sweep), the lock
// takeDirty takes them under.
func (r *Registry) Flush(ctx context.Context) error {
	updates, start := r.takeDirty()
	// Write in bounded transactions: the store has one writer, and a
	// reconnecting fleet dirties thousands of agents at once; one huge
	// transaction would hold registrations, audit rows and command
	// results behind it for seconds.
	for len(updates) > 0 {
		n := min(len(updates), maxFlushBatch)
		if err := r.flushBatch(ctx, updates[:n], updates[n:]); err != nil {
			return err
		}
		updates = updates[n:]
	}
	return r.publishFlushed(ctx, start)
}

// maxFlushBatch is the most agent statuses written in one transaction.
const maxFlushBatch = 256

// flushBatch writes batch; when that fails, batch and rest (not written
// yet) are marked dirty again for the next flush.
func (r *Registry) flushBatch(ctx context.Context, batch, rest []store.AgentStatus) error {
	back, err := r.cfg.Store.UpdateAgentStatuses(ctx, batch)
	if err != nil {
		updates := append(batch[:len(batch):len(batch)], rest...)
		r.mu.Lock()
		for _, u := range updates {
			r.dirty[u.ID] = struct{}{}
			if e, ok := r.agents[u.ID]; ok && u.Attach && e.session != nil {
				e.attachPending = true // the retry writes the attach again
			}
			// Forget the encodings that were not written, so the retry
			// sends the hello and heartbeat again.
			if e, ok := r.agents[u.ID]; ok {
				if u.Hello != nil {
					e.rec.Hello = nil
				}
				if u.LastHeartbeat != nil {
					e.rec.LastHeartbeat = nil
				}
			}
		}
		r.mu.Unlock()
		return fmt.Errorf("fleet: flush %d agent statuses: %w", len(updates), err)
	}
	r.recheckDetached(batch)
	r.toldBack(back)
	return nil
}

// takeDirty returns the pending changes and when it took them (the
// clock read under the lock).
func (r *Registry) takeDirty() ([]store.AgentStatus, time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.cfg.Now()
	if len(r.dirty) == 0 {
		return nil, now
	}
	updates := make([]store.AgentStatus, 0, len(r.dirty))
	for id := range r.dirty {
		e, ok := r.agents[id]
		if !ok {
			continue
		}
		u := store.AgentStatus{
			ID: id, State: e.rec.State, StateReason: e.rec.StateReason, StateChangedAt: e.rec.StateChangedAt,
			ConnectedAt: e.rec.ConnectedAt, LastSeenAt: e.rec.LastSeenAt, PeerAddress: e.rec.PeerAddress,
			Version: e.rec.Version, Hostname: e.rec.Hostname, Labels: e.rec.Labels,
		}
		if e.rec.Hello == nil && e.hello != nil {
			e.rec.Hello, _ = proto.Marshal(e.hello)
			u.Hello = e.rec.Hello
		}
		if e.rec.LastHeartbeat == nil && e.lastHeartbeat != nil {
			e.rec.LastHeartbeat, _ = proto.Marshal(e.lastHeartbeat)
			u.LastHeartbeat = e.rec.LastHeartbeat
			e.persistedAt = now
		}
		r.setHolder(e, &u)
		updates = append(updates, u)
	}
	clear(r.dirty)
	return updates, now
}
