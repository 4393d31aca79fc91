package postgres

import (
	"context"
	"embed"
	"fmt"
	"io/fs"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"

	"flotilla.dev/controlplane/internal/store"
)

// ErrSchemaTooNew is store.ErrSchemaTooNew, which Open wraps for a database
// migrated by a newer binary.
var ErrSchemaTooNew = store.ErrSchemaTooNew

//go:embed migrations/*.sql
var migrationFiles embed.FS

// migrationLock is the key of the transaction-level advisory lock that
// serializes control planes migrating the same database at once.
const migrationLock int64 = 0x666c6f74696c6c61 // "flotilla"

// embeddedMigrations returns the migrations compiled into the binary.
func embeddedMigrations() ([]store.Migration, error) {
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		return nil, fmt.Errorf("store: migrations: %w", err)
	}
	return store.LoadMigrations(sub)
}

// migrate brings the schema up to the last embedded migration in one
// transaction that holds an advisory lock, so that two control planes
// starting together apply each migration once, and a failure leaves the
// schema as it was.
func migrate(ctx context.Context, pool *pgxpool.Pool, log *zap.Logger) error {
	ms, err := embeddedMigrations()
	if err != nil {
		return err
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		return wrap(err, "migrate: begin")
	}
	defer func() { _ = tx.Rollback(ctx) }() // a no-op once committed
	current, err := lockedSchemaVersion(ctx, tx)
	if err != nil {
		return err
	}
	pending, err := store.PendingMigrations(ms, current)
	if err != nil {
		return err
	}
	for _, m := range pending {
		if _, err := tx.Exec(ctx, m.SQL); err != nil {
			return wrap(err, "migration %q", m.Name)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES ($1, now())`, m.Version); err != nil {
			return wrap(err, "migration %q: record version", m.Name)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return wrap(err, "migrate: commit")
	}
	if current < len(ms) {
		log.Info("store schema migrated", zap.Int("from_version", current), zap.Int("to_version", len(ms)))
	}
	return nil
}

// lockedSchemaVersion takes the migration lock for tx, creates the
// version table if it is missing, and returns the highest applied version.
func lockedSchemaVersion(ctx context.Context, tx pgx.Tx) (int, error) {
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, migrationLock); err != nil {
		return 0, wrap(err, "migrate: lock")
	}
	const create = `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER     NOT NULL PRIMARY KEY,
		applied_at TIMESTAMPTZ NOT NULL
	)`
	if _, err := tx.Exec(ctx, create); err != nil {
		return 0, wrap(err, "create schema_migrations")
	}
	var v int
	if err := tx.QueryRow(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&v); err != nil {
		return 0, wrap(err, "read schema version")
	}
	return v, nil
}
