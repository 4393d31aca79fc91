package fleet

import (
	"context"
	"fmt"
	"strings"
	"time"

	"go.uber.org/zap"

	"flotilla.dev/controlplane/internal/store"
)

// A replica writes an agent's heartbeat only when it changes something
// (application health, containers) or once per PersistInterval, not each
// one: writing every heartbeat cost each replica about twice the CPU of
// one control plane, mostly in the other replicas reading the rows back.
// What the others still need is to know that what they read is current,
// which the stream holder tells them once per flush for all its agents:
// the expiry of its progress lease, <FlushedPrefix><holder>, is
// flushedHorizon after the start of its last complete flush (the flush
// watermark). Every change of its agents stamped before the watermark is
// in the store, so another replica that read the lease before the rows
// knows each such agent's row current up to it (Agent.CurrentAt).
//
// The lease's expiry carries the watermark rather than a column of its
// own so that no schema changes: the expiry comes from the database's
// clock, the watermark from the holder's (as heartbeat times always
// did), and the horizon only bounds how old a watermark is still read.

// flushedHorizon is how long after a flush's start its watermark is still
// read (the progress lease's expiry): far longer than any flush interval,
// short enough that a replica that stopped flushing stops vouching.
const flushedHorizon = 30 * time.Second

// publishFlushed sets this replica's flush watermark to start, the moment
// the flush that just completed took the pending changes (replica mode).
// A flush slower than the horizon publishes nothing: its watermark would
// already be past reading.
func (r *Registry) publishFlushed(ctx context.Context, start time.Time) error {
	c := r.cfg.Replica
	if c.Holder == "" {
		return nil
	}
	ttl := flushedHorizon - r.cfg.Now().Sub(start)
	if ttl < time.Second {
		r.log.Warn("agent status flush took longer than the flush watermark's horizon; not publishing it",
			zap.Duration("took", r.cfg.Now().Sub(start)), zap.Duration("horizon", flushedHorizon))
		return nil
	}
	if _, err := c.Leases.AcquireLease(ctx, c.FlushedPrefix+c.Holder, c.Holder, ttl); err != nil {
		return fmt.Errorf("fleet: publish the flush watermark: %w", err)
	}
	return nil
}

// readFlushed returns every live replica's flush watermark by holder.
func (r *Registry) readFlushed(ctx context.Context) (map[string]time.Time, error) {
	c := r.cfg.Replica
	leases, err := c.Leases.LiveLeases(ctx, c.FlushedPrefix)
	if err != nil {
		return nil, fmt.Errorf("fleet: list flush watermarks: %w", err)
	}
	out := make(map[string]time.Time, len(leases))
	for _, l := range leases {
		out[strings.TrimPrefix(l.Name, c.FlushedPrefix)] = l.ExpiresAt.Add(-flushedHorizon)
	}
	return out, nil
}

// currentAt is how far e's reading is known current (r.mu held): its last
// heartbeat's time, or, for a connected agent whose stream another live
// replica holds, that replica's flush watermark when later (it has
// written every change of the agent up to then).
func (r *Registry) currentAt(e *entry) time.Time {
	at := e.heartbeatAt
	holder := e.rec.StreamHolder
	if e.session != nil || !r.replicaMode() || e.rec.State != store.AgentConnected || holder == r.cfg.Replica.Holder {
		return at
	}
	if w := r.view.flushed[holder]; w.After(at) {
		return w
	}
	return at
}
