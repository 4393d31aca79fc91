package fleet

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"flotilla.dev/controlplane/internal/store"
	"flotilla.dev/pkg/run"
)

// Defaults of Rebalance.
const (
	// DefaultRebalanceMinAge: a stream younger than this is never closed
	// to rebalance, so that an agent that just moved settles where it is.
	DefaultRebalanceMinAge = 30 * time.Second
	// DefaultRebalanceInterval is how often a replica compares its share.
	DefaultRebalanceInterval = time.Second
)

// ErrRebalanced is the reason a stream is closed when its replica holds
// more than its share of the fleet: the agent reconnects at once to the
// next address of its list, another replica.
var ErrRebalanced = errors.New("this control plane holds more than its share of the agents' streams; reconnect to another replica")

// Rebalance configures how a replica gives streams back after the replica
// set grew (a replica returned from a failure or was added): agents stay
// where their stream is until it breaks, so without it the survivors of a
// failure keep the whole fleet.
type Rebalance struct {
	// Rate is how many streams a replica over its share closes per second
	// at most; 0 turns rebalancing off.
	Rate int
	// MinAge: see DefaultRebalanceMinAge.
	MinAge time.Duration
	// Interval: see DefaultRebalanceInterval.
	Interval time.Duration
}

func (c *Rebalance) validate() error {
	if c.Rate < 0 || c.MinAge < 0 || c.Interval < 0 {
		return fmt.Errorf("fleet: replica: rebalance: rate (%d), min age (%s) and interval (%s) must not be negative", c.Rate, c.MinAge, c.Interval)
	}
	if c.MinAge == 0 {
		c.MinAge = DefaultRebalanceMinAge
	}
	if c.Interval == 0 {
		c.Interval = DefaultRebalanceInterval
	}
	return nil
}

// rebalanced counts the streams closed to rebalance (a metric).
type rebalanced struct{ n atomic.Uint64 }

// shedMemory is how many MinAges a replica remembers an agent whose
// stream it closed to rebalance: one that comes back within that time
// (its only address is this replica, or its load balancer sent it back) is
// left where it is, rather than closed again and again. An agent seen on
// another replica meanwhile is forgotten (applyRow): it went where it was
// sent, and if it comes back (that replica died, or sent it on) it may be
// moved again; otherwise two failures within the memory would leave the
// fleet on the survivors, every agent of theirs remembered.
const shedMemory = 10

// shedRecently reports whether id's stream was closed to rebalance less
// than shedMemory MinAges before now, and forgets older closes. The
// caller holds r.mu.
func (r *Registry) shedRecently(id string, now time.Time) bool {
	at, ok := r.shed[id]
	if ok && now.Sub(at) >= shedMemory*r.cfg.Replica.Rebalance.MinAge {
		delete(r.shed, id)
		return false
	}
	return ok
}

// RunRebalance calls RebalanceOnce every Rebalance.Interval until ctx ends
// (replica mode with a rate; it only waits otherwise).
func (r *Registry) RunRebalance(ctx context.Context) error {
	if !r.replicaMode() || r.cfg.Replica.Rebalance.Rate <= 0 {
		<-ctx.Done()
		return nil
	}
	return run.Every(ctx, r.cfg.Replica.Rebalance.Interval, func(ctx context.Context) {
		if _, err := r.RebalanceOnce(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn("comparing this replica's share of the streams failed; will retry", zap.Error(err))
		}
	})
}

// RebalanceOnce closes, when this replica holds more streams than its
// share, up to Rate×Interval of them (the oldest first, none younger than
// MinAge, none this replica closed less than ten MinAges ago) and returns
// how many. Its share is the streams held by live
// replicas, as this replica's view shows them, divided by the live
// replicas, rounded up; it starts giving back only past its share plus a
// twentieth of it (so a large fleet's counts, read a second apart, do not
// make it close streams back and forth), and gives back down to its share. An
// agent whose stream is closed this way reconnects at once to the next
// address of its list: another replica (see ErrRebalanced).
func (r *Registry) RebalanceOnce(ctx context.Context) (int, error) {
	if !r.replicaMode() || r.cfg.Replica.Rebalance.Rate <= 0 {
		return 0, nil
	}
	leases, err := r.cfg.Replica.Leases.LiveLeases(ctx, r.cfg.Replica.LeasePrefix)
	if err != nil {
		return 0, fmt.Errorf("fleet: list live replicas: %w", err)
	}
	live := make(map[string]bool, len(leases))
	for _, l := range leases {
		live[strings.TrimPrefix(l.Name, r.cfg.Replica.LeasePrefix)] = true
	}
	if !live[r.cfg.Replica.Holder] || len(live) < 2 {
		return 0, nil // alone, or not counted live by the others
	}
	cfg := r.cfg.Replica.Rebalance
	perTick := max(1, int(float64(cfg.Rate)*cfg.Interval.Seconds()))
	now := r.cfg.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	total, mine := 0, 0
	var movable []*entry
	for _, e := range r.agents {
		switch {
		case e.session != nil:
			total++
			mine++
			if now.Sub(e.rec.ConnectedAt) >= cfg.MinAge && !r.shedRecently(e.rec.ID, now) {
				movable = append(movable, e)
			}
		case e.rec.State == store.AgentConnected && live[e.rec.StreamHolder]:
			total++
		}
	}
	share := (total + len(live) - 1) / len(live)
	if mine <= share+share/20 {
		return 0, nil
	}
	slices.SortFunc(movable, func(a, b *entry) int { return a.rec.ConnectedAt.Compare(b.rec.ConnectedAt) })
	n := min(mine-share, perTick, len(movable))
	if n == 0 {
		return 0, nil // every stream too young, or closed here a moment ago
	}
	for _, e := range movable[:n] {
		e.session.close(ErrRebalanced)
		r.shed[e.rec.ID] = now
	}
	r.rebalanced.n.Add(uint64(n))
	r.log.Info("asking agents to reconnect to another replica: this one holds more than its share of the streams",
		zap.Int("streams", mine), zap.Int("share", share), zap.Int("replicas", len(live)), zap.Int("closing", n))
	return n, nil
}
