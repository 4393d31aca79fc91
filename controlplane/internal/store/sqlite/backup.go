package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"

	"flotilla.dev/controlplane/internal/store"
)

// LatestSchemaVersion is the schema version this binary migrates a
// database to: a backup taken at a higher version cannot be restored by it.
func LatestSchemaVersion() (int, error) {
	ms, err := store.LoadMigrations(embeddedMigrations())
	if err != nil {
		return 0, err
	}
	return len(ms), nil
}

// Snapshot writes a consistent copy of the database at src into dst with
// VACUUM INTO, while the control plane (or any other process) goes on
// using src: the copy is the database as of one read transaction, without
// the -wal file's uncommitted pages. dst must not exist. It returns the
// copy's schema version.
func Snapshot(ctx context.Context, src, dst string) (int, error) {
	if _, err := os.Stat(src); err != nil {
		// Opening would create an empty database in its place.
		return 0, fmt.Errorf("store: snapshot: %w", err)
	}
	db, err := openPlain(src)
	if err != nil {
		return 0, err
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, "VACUUM INTO ?", dst); err != nil {
		return 0, fmt.Errorf("store: snapshot %s into %s: %w", src, dst, err)
	}
	return SchemaVersionOf(ctx, dst)
}

// SchemaVersionOf reads the schema version of the database file at path
// without migrating it (0 for a database without schema_migrations).
func SchemaVersionOf(ctx context.Context, path string) (int, error) {
	if _, err := os.Stat(path); err != nil {
		return 0, fmt.Errorf("store: schema version: %w", err)
	}
	db, err := openPlain(path)
	if err != nil {
		return 0, err
	}
	defer db.Close()
	var exists int
	err = db.QueryRowContext(ctx, "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'").Scan(&exists)
	if err != nil {
		return 0, fmt.Errorf("store: schema version of %s: %w", path, err)
	}
	if exists == 0 {
		return 0, nil
	}
	v, err := schemaVersion(ctx, db)
	if err != nil {
		return 0, fmt.Errorf("store: schema version of %s: %w", path, err)
	}
	return v, nil
}

// openPlain opens one connection to path that waits for locks and changes
// nothing about the file (no journal mode, no migration).
func openPlain(path string) (*sql.DB, error) {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(5000)")
	db, err := sql.Open("sqlite", path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	return db, nil
}

// ErrNotADatabase is returned by CheckIntegrity for a file that SQLite
// does not accept as a healthy database.
var ErrNotADatabase = errors.New("not a healthy SQLite database")

// CheckIntegrity runs SQLite's integrity check on the file at path.
func CheckIntegrity(ctx context.Context, path string) error {
	db, err := openPlain(path)
	if err != nil {
		return err
	}
	defer db.Close()
	var result string
	if err := db.QueryRowContext(ctx, "PRAGMA integrity_check").Scan(&result); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrNotADatabase, path, err)
	}
	if result != "ok" {
		return fmt.Errorf("%w: %s: %s", ErrNotADatabase, path, result)
	}
	return nil
}
