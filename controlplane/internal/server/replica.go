package server

import (
	"context"
	"fmt"

	"go.uber.org/zap"

	"flotilla.dev/controlplane/internal/config"
	"flotilla.dev/controlplane/internal/lease"
)

// ReplicaLeasePrefix starts the name of every replica's own lease:
// "replica/<holder>". A replica is live while its lease row has not expired
// by the database's clock.
const ReplicaLeasePrefix = "replica/"

// ReplicaLeaseName is the name of the lease of the replica holder.
func ReplicaLeaseName(holder string) string { return ReplicaLeasePrefix + holder }

// joinReplicas makes this process one replica of the control plane on a
// PostgreSQL store: every process on one database serves the whole API,
// each under a holder ID of its own (host, PID, random) and the lease
// replica/<holder>, which says the replica is live. Losing that lease stops
// the process (see Run): its work may be taken over elsewhere from then on.
// SQLite needs none of it: the data directory's lock keeps a second process
// out, and Holder stays "" (no replica mode).
func (s *Server) joinReplicas(ctx context.Context) error {
	if s.cfg.Store.Driver != config.DriverPostgres {
		return nil
	}
	holder := lease.NewHolderID()
	k, err := lease.New(lease.Config{
		Store: s.store, Name: ReplicaLeaseName(holder), Holder: holder, TTL: s.cfg.Store.LeaseTTL.Std(),
		Logger: s.log.Named("lease"),
	})
	if err != nil {
		return err
	}
	// The holder ID is new, so nobody else holds this lease: an error here
	// is the database's.
	if _, err := k.Acquire(ctx); err != nil {
		return fmt.Errorf("replica lease: %w", err)
	}
	s.lease, s.holder = k, holder
	s.log.Info("joined the control plane's replicas", zap.String("holder", holder),
		zap.Duration("lease_ttl", s.cfg.Store.LeaseTTL.Std()))
	return nil
}

// Holder is this replica's holder ID on a PostgreSQL store (the holder of
// its replica/<holder> lease, and of every lease of work it drives), or ""
// on SQLite, where one process is the whole control plane.
func (s *Server) Holder() string { return s.holder }

// ReplicaMode reports whether this process is one of several possible
// replicas on a shared store (PostgreSQL).
func (s *Server) ReplicaMode() bool { return s.holder != "" }
