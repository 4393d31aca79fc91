package fleet

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.uber.org/zap"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/controlplane/internal/store"
	"flotilla.dev/pkg/logging"
	"flotilla.dev/pkg/run"
)

// Replica configures a registry that is one replica's view of a fleet
// shared by several control planes on one store. Each replica holds the
// streams of the agents connected to it, as with one process; it writes
// itself as their stream holder, and refreshes every other agent from the
// store every RefreshInterval. It never marks an agent it does not hold
// lost: the leader of the fleet lease does (RunFleetLiveness).
type Replica struct {
	// Holder is this replica's holder ID (its replica lease's holder).
	// Empty: not a replica (one process; every other field is ignored).
	Holder string
	// LeasePrefix starts the names of the replicas' leases, followed by
	// their holder IDs (e.g. "replica/"): a replica is live while its
	// lease has not expired.
	LeasePrefix string
	// FlushedPrefix starts the names of the replicas' flush progress
	// leases, followed by their holder IDs (e.g. "fleet-flushed/"): see
	// publishFlushed.
	FlushedPrefix string
	// Leases lists the live replica leases and keeps this replica's flush
	// progress lease.
	Leases ReplicaLeases
	// Leader says whether this replica leads the fleet's jobs now.
	Leader Leadership
	// RefreshInterval is how often the rest of the fleet is read from the
	// store (default 1s).
	RefreshInterval time.Duration
	// Rebalance spreads the streams again after a replica returns (see
	// RunRebalance).
	Rebalance Rebalance
}

// ReplicaLeases lists the live leases whose names start with a prefix and
// takes or renews one (store.LeaseStore).
type ReplicaLeases interface {
	LiveLeases(ctx context.Context, prefix string) ([]store.Lease, error)
	AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (store.Lease, error)
}

// Leadership says whether this process holds a lease now (lease.Leader).
type Leadership interface {
	Leading() bool
}

// refreshPage is how many changed agents one store read returns.
const refreshPage = 1000

// refreshLag is how many refreshes back the store is read from: a
// PostgreSQL write takes its status_seq before it commits, so a write that
// commits after a later one was read would be skipped by a reader that
// moved its cursor past both. Re-reading the last few seconds of changes
// catches every write that commits within that long of taking its value;
// a connected agent's row is written again at its next heartbeat anyway.
// Each refresh reads every change about refreshLag times: a larger lag
// costs that much more reading.
const refreshLag = 3

// view is a replica's position in the shared fleet view. Guarded by
// Registry.mu, except history, which only Refresh (under refreshMu) uses.
type view struct {
	// seen is the largest status_seq applied or skipped.
	seen int64
	// history holds seen as of the last refreshes, oldest first: reads
	// start from its first value.
	history []int64
	// recheck holds agents whose store row was skipped while a local
	// write of theirs was pending, read again once it is written.
	recheck map[string]struct{}
	// flushed is each replica's flush watermark as of the last refresh
	// (see publishFlushed).
	flushed map[string]time.Time
}

func (c *Replica) validate() error {
	if c.Holder == "" {
		return nil
	}
	switch {
	case c.LeasePrefix == "":
		return errors.New("fleet: replica: lease prefix: required")
	case c.FlushedPrefix == "" || c.FlushedPrefix == c.LeasePrefix:
		return errors.New("fleet: replica: flushed prefix: required, and not the lease prefix")
	case c.Leases == nil:
		return errors.New("fleet: replica: leases: required")
	case c.Leader == nil:
		return errors.New("fleet: replica: leader: required")
	case c.RefreshInterval < 0:
		return fmt.Errorf("fleet: replica: refresh interval: %s is negative", c.RefreshInterval)
	}
	if c.RefreshInterval == 0 {
		c.RefreshInterval = time.Second
	}
	return c.Rebalance.validate()
}

// replicaMode reports whether the registry is one replica's view.
func (r *Registry) replicaMode() bool { return r.cfg.Replica.Holder != "" }

// Leading reports whether this process does the fleet-wide jobs (lost
// marking, fleet metrics) now: always for one process, the fleet lease's
// leader among replicas.
func (r *Registry) Leading() bool {
	if !r.replicaMode() {
		return true
	}
	return r.cfg.Replica.Leader.Leading()
}

// setHolder fills the stream holder of a status write of e (replica mode):
// an attach not yet written claims the row whatever it says; any other
// write applies only while the row still names this replica, so that it
// never overwrites another replica's newer attachment.
func (r *Registry) setHolder(e *entry, u *store.AgentStatus) {
	me := r.cfg.Replica.Holder
	if me == "" {
		return
	}
	u.IfHolder = me
	if e.session != nil {
		u.StreamHolder = me
		if e.attachPending {
			u.IfHolder, u.Attach = "", true
		}
	}
	e.attachPending = false
}

// toldBack tells, in replica mode, that the agents whose attach the store
// found lost are back: the replica whose write brought an agent back
// learns it from the store, however stale its own view was (the fleet
// leader may have marked the agent lost since this replica last read it),
// so every return is told once, by one replica. Attach's own change of
// state tells nothing of a return in replica mode (see setState).
func (r *Registry) toldBack(ids []string) {
	fn := r.cfg.OnStateChange
	if len(ids) == 0 {
		return
	}
	changes := make([]StateChange, 0, len(ids))
	r.mu.Lock()
	for _, id := range ids {
		e, ok := r.agents[id]
		if !ok {
			continue
		}
		r.log.Info("agent back after it was lost", logging.AgentID(id), logging.Hostname(e.rec.Hostname))
		changes = append(changes, StateChange{AgentID: id, Hostname: e.rec.Hostname, From: store.AgentLost, To: store.AgentConnected,
			Reason: e.rec.StateReason, At: e.rec.StateChangedAt})
	}
	r.mu.Unlock()
	if fn == nil {
		return
	}
	for _, c := range changes {
		fn(c)
	}
}

// recheckDetached queues the agents of a written batch that this replica
// no longer holds: if the conditional write did not apply, another replica
// holds them, and its row may already have gone past the cursor.
func (r *Registry) recheckDetached(batch []store.AgentStatus) {
	if !r.replicaMode() {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, u := range batch {
		if u.StreamHolder == "" {
			r.recheckLocked(u.ID)
		}
	}
}

func (r *Registry) recheckLocked(id string) {
	if r.view.recheck == nil {
		r.view.recheck = make(map[string]struct{})
	}
	r.view.recheck[id] = struct{}{}
}

// RunRefresh refreshes the agents this replica does not hold from the
// store every RefreshInterval until ctx ends (replica mode; it only waits
// otherwise).
func (r *Registry) RunRefresh(ctx context.Context) error {
	if !r.replicaMode() {
		<-ctx.Done()
		return nil
	}
	return run.Every(ctx, r.cfg.Replica.RefreshInterval, func(ctx context.Context) {
		if err := r.Refresh(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn("reading the fleet from the store failed; will retry", zap.Error(err))
		}
	})
}

// Refresh applies the agents changed in the store since the last
// refreshes (see refreshLag) to the entries this replica does not hold:
// agents registered elsewhere join, deregistered ones leave (their stream
// here, if any, closed), the others take the stored row.
func (r *Registry) Refresh(ctx context.Context) error {
	r.refreshMu.Lock()
	defer r.refreshMu.Unlock()
	// The watermarks are read before the rows: each vouches for the rows
	// its replica wrote before publishing it, which the read below sees.
	flushed, err := r.readFlushed(ctx)
	if err != nil {
		return fmt.Errorf("fleet: refresh: %w", err)
	}
	r.mu.RLock()
	from := r.view.seen
	if len(r.view.history) > 0 {
		from = r.view.history[0]
	}
	r.mu.RUnlock()
	for {
		rows, err := r.cfg.Store.ListAgentsChanged(ctx, from, refreshPage)
		if err != nil {
			return fmt.Errorf("fleet: refresh: %w", err)
		}
		r.applyRows(rows, true)
		if len(rows) < refreshPage {
			break
		}
		from = rows[len(rows)-1].StatusSeq
	}
	if err := r.recheck(ctx); err != nil {
		return err
	}
	if err := r.showDeadHolders(ctx); err != nil {
		return err
	}
	r.mu.Lock()
	r.view.flushed = flushed
	r.view.history = append(r.view.history, r.view.seen)
	if len(r.view.history) > refreshLag {
		r.view.history = r.view.history[1:]
	}
	r.mu.Unlock()
	return nil
}

// recheck reads the queued agents whose local writes are done.
func (r *Registry) recheck(ctx context.Context) error {
	r.mu.Lock()
	var ids []string
	for id := range r.view.recheck {
		if _, pending := r.dirty[id]; !pending {
			ids = append(ids, id)
			delete(r.view.recheck, id)
		}
	}
	r.mu.Unlock()
	for i, id := range ids {
		a, err := r.cfg.Store.GetAgent(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			r.mu.Lock()
			for _, left := range ids[i:] {
				r.recheckLocked(left)
			}
			r.mu.Unlock()
			return fmt.Errorf("fleet: refresh agent %s: %w", id, err)
		}
		r.applyRows([]store.Agent{a}, false)
	}
	return nil
}

// applyRows applies stored rows under the registry's lock; advance moves
// the cursor past them (rows read in status_seq order by Refresh, not rows
// read one by one, which may be newer than rows not read yet).
func (r *Registry) applyRows(rows []store.Agent, advance bool) {
	if len(rows) == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, row := range rows {
		if advance {
			r.view.seen = max(r.view.seen, row.StatusSeq)
		}
		r.applyRow(row)
	}
}

// Known reports whether id is a registered agent, as Has does; a replica
// that does not know it yet (it registered on another replica since the
// last refresh) reads it from the store first, so that the agent's first
// stream is not refused for a second.
func (r *Registry) Known(id string) bool {
	if r.Has(id) {
		return true
	}
	if !r.replicaMode() {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	a, err := r.cfg.Store.GetAgent(ctx, id)
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			r.log.Warn("reading an agent this replica does not know yet failed", logging.AgentID(id), zap.Error(err))
		}
		return false
	}
	r.applyRows([]store.Agent{a}, false)
	return r.Has(id)
}

// applyRow applies one stored row (r.mu held): a local stream and a local
// write not yet made win over the store.
func (r *Registry) applyRow(row store.Agent) {
	e, ok := r.agents[row.ID]
	if !row.DeregisteredAt.IsZero() {
		if ok {
			r.removeLocked(row.ID, &DeregisteredError{Message: fmt.Sprintf(
				"agent %s was deregistered at %s: %s", row.ID, row.DeregisteredAt.UTC().Format(time.RFC3339), row.DeregisterReason)})
		}
		return
	}
	if !ok {
		e = &entry{rec: row, persistedAt: r.cfg.Now(), heartbeatAt: row.LastSeenAt}
		e.hello = decode[flotillav1.Hello](row.Hello, r.log, row.ID)
		e.lastHeartbeat = decode[flotillav1.Heartbeat](row.LastHeartbeat, r.log, row.ID)
		r.insertLocked(e)
		return
	}
	if e.session != nil {
		r.reclaimLostLocked(e, row)
		return
	}
	if row.StatusSeq <= e.rec.StatusSeq {
		return
	}
	if _, pending := r.dirty[row.ID]; pending {
		r.recheckLocked(row.ID)
		return
	}
	if !bytes.Equal(row.Hello, e.rec.Hello) {
		e.hello = decode[flotillav1.Hello](row.Hello, r.log, row.ID)
	}
	if !bytes.Equal(row.LastHeartbeat, e.rec.LastHeartbeat) {
		e.lastHeartbeat = decode[flotillav1.Heartbeat](row.LastHeartbeat, r.log, row.ID)
	}
	if row.State != e.rec.State {
		r.log.Debug("agent state changed on another replica", logging.AgentID(row.ID),
			zap.String("from", e.rec.State), zap.String("to", row.State), zap.String("stream_holder", row.StreamHolder))
	}
	if row.State == store.AgentConnected && row.StreamHolder != "" && row.StreamHolder != r.cfg.Replica.Holder {
		// It reached another replica since this one closed its stream to
		// rebalance: should it come back (that replica died, or sent it
		// on), it was not bounced back, and it may be moved again.
		delete(r.shed, row.ID)
	}
	e.rec = row
	e.heartbeatAt = row.LastSeenAt
}

// reclaimLostLocked claims again, at the next flush, the stream of an
// agent held here that the fleet leader marked lost (r.mu held): the
// leader saw this replica's lease expired, while this replica renewed it
// late without noticing the lapse (a slow database, a pause), so Reclaim
// never ran; its conditional writes no longer apply to the row, which
// would stay lost while the agent is connected here. The attach written
// again finds the agent lost and tells it back (toldBack).
func (r *Registry) reclaimLostLocked(e *entry, row store.Agent) {
	if row.State != store.AgentLost || row.StreamHolder != "" || e.attachPending {
		return
	}
	e.attachPending = true
	r.dirty[row.ID] = struct{}{}
	r.log.Info("the fleet leader marked lost an agent whose stream this replica holds; claiming it again",
		logging.AgentID(row.ID), zap.String("reason", row.StateReason))
}

// showDeadHolders shows the agents whose stored stream holder is not a
// live replica (it died, or stopped before it could write their detach)
// as disconnected, waiting to reconnect, in this replica's view only: the
// row is left to the fleet leader, and the next write of it replaces what
// is shown.
func (r *Registry) showDeadHolders(ctx context.Context) error {
	leases, err := r.cfg.Replica.Leases.LiveLeases(ctx, r.cfg.Replica.LeasePrefix)
	if err != nil {
		return fmt.Errorf("fleet: list live replicas: %w", err)
	}
	live := make(map[string]bool, len(leases))
	for _, l := range leases {
		live[strings.TrimPrefix(l.Name, r.cfg.Replica.LeasePrefix)] = true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.agents {
		holder := e.rec.StreamHolder
		if e.session != nil || e.rec.State != store.AgentConnected || live[holder] {
			continue
		}
		e.rec.State = store.AgentDisconnected
		e.rec.StateReason = "no live control plane holds its stream; waiting for the agent to reconnect"
		if holder != "" {
			e.rec.StateReason = fmt.Sprintf("control plane %s holding its stream is gone; waiting for the agent to reconnect", holder)
		}
	}
	return nil
}

// Reclaim writes this replica again as the stream holder of every agent
// it holds, unconditionally, at the next flush: after its replica lease
// lapsed (the store was out of reach), the fleet leader may have marked
// them lost and cleared their holder, and conditional writes would no
// longer apply. Nothing happens outside replica mode.
func (r *Registry) Reclaim() {
	if !r.replicaMode() {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for id, e := range r.agents {
		if e.session != nil {
			e.attachPending = true
			r.dirty[id] = struct{}{}
			n++
		}
	}
	// Logged even with no stream at this instant (agents whose streams
	// closed during the outage write their attach when they come back):
	// it tells the operator the replica took its lease again.
	r.log.Info("claiming the streams this replica holds again", zap.Int("agents", n))
}
