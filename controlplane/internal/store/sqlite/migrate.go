package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"time"

	"flotilla.dev/controlplane/internal/store"
)

// ErrSchemaTooNew is returned by Open for a database migrated by a newer
// binary: this one does not know the newer schema and must not write to it.
// It is store.ErrSchemaTooNew, which both drivers return.
var ErrSchemaTooNew = store.ErrSchemaTooNew

//go:embed migrations/*.sql
var migrationFiles embed.FS

// migrate brings the schema up to the last of ms, one transaction per
// migration, so that a crash leaves the database at a known version.
func migrate(ctx context.Context, db *sql.DB, ms []store.Migration) error {
	const create = `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER NOT NULL PRIMARY KEY,
		applied_at TEXT    NOT NULL
	)`
	if _, err := db.ExecContext(ctx, create); err != nil {
		return fmt.Errorf("store: create schema_migrations: %w", err)
	}
	current, err := schemaVersion(ctx, db)
	if err != nil {
		return err
	}
	pending, err := store.PendingMigrations(ms, current)
	if err != nil {
		return err
	}
	for _, m := range pending {
		if err := applyMigration(ctx, db, m); err != nil {
			return err
		}
	}
	return nil
}

// schemaVersion returns the highest applied migration, 0 for a new database.
func schemaVersion(ctx context.Context, db *sql.DB) (int, error) {
	var v int
	err := db.QueryRowContext(ctx, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations").Scan(&v)
	if err != nil {
		return 0, fmt.Errorf("store: read schema version: %w", err)
	}
	return v, nil
}

// applyMigration runs m and records it in one transaction. It checks again
// inside the transaction, which holds the write lock, because another process
// opening the same file may have applied m since the version was read.
func applyMigration(ctx context.Context, db *sql.DB, m store.Migration) error {
	op := fmt.Sprintf("migration %q", m.Name)
	return inTx(ctx, db, op, func(tx *sql.Tx) error {
		var applied int
		err := tx.QueryRowContext(ctx, "SELECT COUNT(*) FROM schema_migrations WHERE version = ?", m.Version).Scan(&applied)
		if err != nil {
			return fmt.Errorf("store: %s: %w", op, err)
		}
		if applied > 0 {
			return nil
		}
		if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
			return fmt.Errorf("store: %s: %w", op, err)
		}
		_, err = tx.ExecContext(ctx, "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
			m.Version, time.Now().UTC().Format(time.RFC3339Nano))
		if err != nil {
			return fmt.Errorf("store: %s: record version: %w", op, err)
		}
		return nil
	})
}
