package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"flotilla.dev/controlplane/internal/config"
	"flotilla.dev/controlplane/internal/datadir"
	"flotilla.dev/controlplane/internal/store"
	"flotilla.dev/controlplane/internal/store/postgres"
	"flotilla.dev/controlplane/internal/store/sqlite"
)

// openConfiguredStore opens the store the configuration names. A SQLite store is opened only
// under the data directory's lock, which the returned store holds until it
// is closed: a second control plane on the same directory fails here, at
// once, before it loads or drives anything.
func openConfiguredStore(ctx context.Context, cfg config.Config, log *zap.Logger) (store.Store, error) {
	switch cfg.Store.Driver {
	case config.DriverSQLite:
		return openSQLite(ctx, cfg, log)
	case config.DriverPostgres:
		return openPostgres(ctx, cfg, log)
	default:
		return nil, fmt.Errorf("store.driver: %q is not one of sqlite, postgres", cfg.Store.Driver)
	}
}

func openSQLite(ctx context.Context, cfg config.Config, log *zap.Logger) (store.Store, error) {
	lock, err := datadir.Acquire(cfg.DataDir, time.Now())
	if err != nil {
		return nil, err
	}
	st, err := sqlite.Open(ctx, cfg.Store.Path)
	if err != nil {
		return nil, errors.Join(err, lock.Release())
	}
	log.Info("opened the SQLite store", zap.String("path", cfg.Store.Path), zap.String("lock", lock.Path()))
	return &lockedStore{Store: st, lock: lock}, nil
}

// lockedStore is a store that holds the data directory's lock until it is
// closed.
type lockedStore struct {
	store.Store
	lock *datadir.Lock
}

// Close closes the store, then gives the lock up.
func (s *lockedStore) Close() error {
	return errors.Join(s.Store.Close(), s.lock.Release())
}

func openPostgres(ctx context.Context, cfg config.Config, log *zap.Logger) (store.Store, error) {
	dsn, err := cfg.Store.ConnString()
	if err != nil {
		return nil, err
	}
	log.Info("opening the PostgreSQL store", zap.String("dsn", cfg.Store.RedactedDSN()), zap.Int32("max_conns", cfg.Store.MaxConns))
	// The driver's errors name the host, port, database and user (never
	// the password) under "store: postgres:"; a second prefix would only
	// repeat them.
	st, err := postgres.Open(ctx, postgres.Config{DSN: dsn, MaxConns: cfg.Store.MaxConns, Logger: log.Named("store")})
	if err != nil {
		return nil, err // not a typed nil in the interface
	}
	return st, nil
}
