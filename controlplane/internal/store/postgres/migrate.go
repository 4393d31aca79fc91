package postgres

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"regexp"
	"slices"
	"strconv"

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

// migrationName is NNNN_description.sql; NNNN is the schema version, the
// same as the SQLite migration of the same number.
var migrationName = regexp.MustCompile(`^([0-9]{4})_[a-z0-9_]+\.sql$`)

// migrationLock is the key of the transaction-level advisory lock that
// serializes control planes migrating the same database at once.
const migrationLock int64 = 0x666c6f74696c6c61 // "flotilla"

// migration is one numbered schema change.
type migration struct {
	version int
	name    string
	sql     string
}

// loadMigrations reads the migrations at the root of fsys and checks that
// they are numbered 1, 2, 3… without gaps or duplicates.
func loadMigrations(fsys fs.FS) ([]migration, error) {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("store: read migrations: %w", err)
	}
	var ms []migration
	for _, e := range entries {
		m := migrationName.FindStringSubmatch(e.Name())
		if e.IsDir() || m == nil {
			return nil, fmt.Errorf("store: migration %q: name must match %s", e.Name(), migrationName)
		}
		version, _ := strconv.Atoi(m[1]) // four digits always parse
		text, err := fs.ReadFile(fsys, e.Name())
		if err != nil {
			return nil, fmt.Errorf("store: read migration %q: %w", e.Name(), err)
		}
		ms = append(ms, migration{version: version, name: e.Name(), sql: string(text)})
	}
	slices.SortFunc(ms, func(a, b migration) int { return a.version - b.version })
	for i, m := range ms {
		if m.version != i+1 {
			return nil, fmt.Errorf("store: migration %q: version %d, want %d", m.name, m.version, i+1)
		}
	}
	return ms, nil
}

// embeddedMigrations returns the migrations compiled into the binary.
func embeddedMigrations() ([]migration, error) {
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		return nil, fmt.Errorf("store: migrations: %w", err)
	}
	return loadMigrations(sub)
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
	if current > len(ms) {
		return fmt.Errorf("store: %w: database is at version %d, this binary knows up to version %d",
			ErrSchemaTooNew, current, len(ms))
	}
	for _, m := range ms[current:] {
		if _, err := tx.Exec(ctx, m.sql); err != nil {
			return wrap(err, "migration %q", m.name)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES ($1, now())`, m.version); err != nil {
			return wrap(err, "migration %q: record version", m.name)
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
