package server

import (
	"context"
	"fmt"

	"go.uber.org/zap"

	"flotilla.dev/controlplane/internal/config"
	"flotilla.dev/controlplane/internal/fleet"
	"flotilla.dev/controlplane/internal/lease"
	"flotilla.dev/controlplane/internal/work"
	"flotilla.dev/pkg/run"
)

// ReplicaLeasePrefix starts the name of every replica's own lease:
// "replica/<holder>". A replica is live while its lease row has not expired
// by the database's clock.
const ReplicaLeasePrefix = "replica/"

// FlushedLeasePrefix starts the name of every replica's flush progress
// lease: "fleet-flushed/<holder>", whose expiry tells the other replicas
// how far the agent statuses it holds are written (see fleet.Replica).
const FlushedLeasePrefix = "fleet-flushed/"

// FleetLease is the lease of the replica that leads the fleet: it marks
// lost the agents no live replica holds and exports the fleet-level
// metrics.
const FleetLease = "fleet"

// ReplicaLeaseName is the name of the lease of the replica holder.
func ReplicaLeaseName(holder string) string { return ReplicaLeasePrefix + holder }

// joinReplicas makes this process one replica of the control plane on a
// PostgreSQL store: every process on one database serves the whole API,
// each under a holder ID of its own (host, PID, random) and the lease
// replica/<holder>, which says the replica is live. When it cannot renew
// that lease (the store out of reach for longer than the lease), the other
// replicas count it dead and take its work over (the work's own leases
// step it down); it keeps its agents' streams, serving from memory, takes
// the lease again as soon as the store answers and claims those streams
// again, so that an outage of the database stops nothing.
// SQLite needs none of it: the data directory's lock keeps a second process
// out, and Holder stays "" (no replica mode).
func (s *Server) joinReplicas(ctx context.Context) error {
	if s.cfg.Store.Driver != config.DriverPostgres {
		return nil
	}
	holder := lease.NewHolderID()
	k, err := lease.NewLeader(lease.Config{
		Store: s.store, Name: ReplicaLeaseName(holder), Holder: holder, TTL: s.cfg.Store.LeaseTTL.Std(),
		Logger: s.log.Named("lease"),
	})
	if err != nil {
		return err
	}
	// The holder ID is new, so nobody else holds this lease: an error here
	// is the database's.
	if err := k.Acquire(ctx); err != nil {
		return fmt.Errorf("replica lease: %w", err)
	}
	// A term after the first follows a lapse (the store was out of reach
	// for longer than the lease): claim the streams held meanwhile again.
	terms := 0
	k.OnChange(func(leading bool) {
		if leading {
			if terms++; terms > 1 {
				s.registry.Reclaim()
			}
		}
	})
	leader, err := lease.NewLeader(lease.Config{
		Store: s.store, Name: FleetLease, Holder: holder, TTL: s.cfg.Store.LeaseTTL.Std(),
		RetryInterval: s.cfg.Store.LeaseTTL.Std() / 10, Logger: s.log.Named("lease"),
	})
	if err != nil {
		return err
	}
	s.lease, s.holder, s.fleetLeader = k, holder, leader
	s.log.Info("joined the control plane's replicas", zap.String("holder", holder),
		zap.Duration("lease_ttl", s.cfg.Store.LeaseTTL.Std()))
	return nil
}

// fleetReplica is the registry's replica configuration: none on SQLite.
func (s *Server) fleetReplica() fleet.Replica {
	if s.holder == "" {
		return fleet.Replica{}
	}
	return fleet.Replica{
		Holder: s.holder, LeasePrefix: ReplicaLeasePrefix, FlushedPrefix: FlushedLeasePrefix, Leases: s.store, Leader: s.fleetLeader,
		RefreshInterval: s.opts.intervals.FleetRefresh,
		Rebalance:       fleet.Rebalance{Rate: s.cfg.AgentRebalanceRate},
	}
}

// replicaTasks are the loops of a replica: its own lease (see
// joinReplicas), the fleet lease (losing it only stops leading), the
// refresh of the fleet view, the fleet leader's liveness sweep and the
// rebalancing of the streams. None on SQLite.
func (s *Server) replicaTasks() []run.Task {
	if s.holder == "" {
		return nil
	}
	return []run.Task{
		{Name: "replica-lease", Run: s.lease.Run},
		{Name: "fleet-lease", Run: s.fleetLeader.Run},
		{Name: "fleet-refresh", Run: s.registry.RunRefresh},
		{Name: "fleet-liveness", Run: s.registry.RunFleetLiveness},
		{Name: "fleet-rebalance", Run: s.registry.RunRebalance},
	}
}

// Holder is this replica's holder ID on a PostgreSQL store (the holder of
// its replica/<holder> lease, and of every lease of work it drives), or ""
// on SQLite, where one process is the whole control plane.
func (s *Server) Holder() string { return s.holder }

// ReplicaMode reports whether this process is one of several possible
// replicas on a shared store (PostgreSQL).
func (s *Server) ReplicaMode() bool { return s.holder != "" }

// workMetrics returns the work leases' metrics, registered on first use
// (replica mode only: a single control plane holds no work lease).
func (s *Server) workMetrics() *work.Metrics {
	if s.holder == "" {
		return nil
	}
	if s.leaseMetrics == nil {
		s.leaseMetrics = work.NewMetrics(s.metrics)
	}
	return s.leaseMetrics
}
