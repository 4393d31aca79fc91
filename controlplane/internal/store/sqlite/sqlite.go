package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver

	"flotilla.dev/controlplane/internal/store"
)

var _ store.Store = (*Store)(nil)

// connPragmas apply to every connection of both pools, through the DSN so
// that a connection database/sql opens later gets them too.
var connPragmas = []string{
	// Wait for a lock held by another connection (or process) rather than
	// failing at once with SQLITE_BUSY.
	"busy_timeout(5000)",
	"foreign_keys(1)",
	// WAL lets readers proceed while a write is in progress.
	"journal_mode(WAL)",
	// FULL syncs the WAL on every commit: the rollout engine relies on a
	// committed transition surviving kill -9 and power loss.
	"synchronous(FULL)",
}

// Store is the SQLite store. It is safe for concurrent use.
type Store struct {
	write *sql.DB // exactly one connection, transactions BEGIN IMMEDIATE
	read  *sql.DB // read-only connections
	seqs  changeSeqs
}

// Open opens the database at path, creating the file with mode 0600 if it
// does not exist, and migrates its schema to the latest version this binary
// knows. The directory must exist. A database whose schema is newer than the
// binary is refused with an error wrapping ErrSchemaTooNew.
func Open(ctx context.Context, path string) (*Store, error) {
	abs, err := prepareFile(path)
	if err != nil {
		return nil, err
	}
	write, err := openPool(abs, false)
	if err != nil {
		return nil, err
	}
	if err := initSchema(ctx, write); err != nil {
		return nil, errors.Join(err, write.Close())
	}
	read, err := openPool(abs, true)
	if err != nil {
		return nil, errors.Join(err, write.Close())
	}
	// Surface a bad read pool now rather than on the first request.
	if err := read.PingContext(ctx); err != nil {
		err = fmt.Errorf("store: open %q: read pool: %w", abs, err)
		return nil, errors.Join(err, read.Close(), write.Close())
	}
	return &Store{write: write, read: read}, nil
}

// prepareFile checks that path's directory exists and creates the database
// file with mode 0600 if it is missing, since SQLite would otherwise create it
// with the umask's permissions. SQLite gives the -wal and -shm files the mode
// of the database file. It returns the absolute path, which can never be
// mistaken for ":memory:" or a "file:" URI by the driver.
func prepareFile(path string) (string, error) {
	if path == "" {
		return "", errors.New("store: open: empty database path")
	}
	if strings.ContainsRune(path, '?') {
		// The driver would read everything after '?' as DSN parameters.
		return "", fmt.Errorf("store: open %q: database path must not contain '?'", path)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("store: open %q: %w", path, err)
	}
	dir := filepath.Dir(abs)
	info, err := os.Stat(dir)
	if err != nil {
		return "", fmt.Errorf("store: open %q: database directory: %w", abs, err)
	}
	if !info.IsDir() {
		return "", fmt.Errorf("store: open %q: %q is not a directory", abs, dir)
	}
	f, err := os.OpenFile(abs, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return "", fmt.Errorf("store: open %q: %w", abs, err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("store: open %q: %w", abs, err)
	}
	return abs, nil
}

// openPool returns the writer pool (one connection) or the read-only pool.
// database/sql connects lazily, so DSN errors appear on first use.
func openPool(path string, readOnly bool) (*sql.DB, error) {
	db, err := sql.Open("sqlite", dsn(path, readOnly))
	if err != nil {
		return nil, fmt.Errorf("store: open %q: %w", path, err)
	}
	n := 1
	if readOnly {
		n = max(4, runtime.GOMAXPROCS(0))
	}
	db.SetMaxOpenConns(n)
	// Keep every connection: reopening one re-runs the pragmas for nothing.
	db.SetMaxIdleConns(n)
	return db, nil
}

// dsn builds the driver's data source name for path.
func dsn(path string, readOnly bool) string {
	q := url.Values{}
	for _, p := range connPragmas {
		q.Add("_pragma", p)
	}
	if readOnly {
		// Defence in depth: a write sent to the read pool by mistake fails
		// instead of competing with the writer for the lock.
		q.Add("_pragma", "query_only(1)")
	} else {
		// Take the write lock at BEGIN, so that a transaction that reads
		// before it writes cannot fail with SQLITE_BUSY when it upgrades,
		// including against another process on the same file.
		q.Set("_txlock", "immediate")
	}
	return path + "?" + q.Encode()
}

// initSchema checks that WAL mode took effect and migrates the schema.
func initSchema(ctx context.Context, write *sql.DB) error {
	var mode string
	if err := write.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return fmt.Errorf("store: open: read journal mode: %w", err)
	}
	// SQLite silently keeps the old mode where WAL is impossible (some
	// network file systems); concurrency and durability assume WAL.
	if !strings.EqualFold(mode, "wal") {
		return fmt.Errorf("store: open: journal mode is %q, want \"wal\"", mode)
	}
	ms, err := store.LoadMigrations(embeddedMigrations())
	if err != nil {
		return err
	}
	return migrate(ctx, write, ms)
}

// embeddedMigrations returns the migrations compiled into the binary.
func embeddedMigrations() fs.FS {
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		// fs.Sub fails only on an invalid path literal.
		panic(err)
	}
	return sub
}

// Ping checks that the database answers with a query that reads the file.
func (s *Store) Ping(ctx context.Context) error {
	var v sql.NullInt64
	if err := s.read.QueryRowContext(ctx, "SELECT MAX(version) FROM schema_migrations").Scan(&v); err != nil {
		return fmt.Errorf("store: ping: %w", err)
	}
	return nil
}

// Close closes both connection pools.
func (s *Store) Close() error {
	if err := errors.Join(s.read.Close(), s.write.Close()); err != nil {
		return fmt.Errorf("store: close: %w", err)
	}
	return nil
}

// rowQuerier is what *sql.DB and *sql.Tx share for single-row queries.
type rowQuerier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// rowScanner is what *sql.Row and *sql.Rows share.
type rowScanner interface {
	Scan(dest ...any) error
}

// inWriteTx runs fn in a transaction on the writer connection; see inTx.
func (s *Store) inWriteTx(ctx context.Context, op string, fn func(*sql.Tx) error) error {
	return inTx(ctx, s.write, op, fn)
}

// inTx runs fn in a transaction on db and commits it if fn returns nil. fn's
// error is returned unwrapped, so fn decides how its errors read and
// caller-supplied errors (from RegisterAgent's build) reach the caller
// unchanged.
func inTx(ctx context.Context, db *sql.DB, op string, fn func(*sql.Tx) error) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: %s: begin: %w", op, err)
	}
	if err := fn(tx); err != nil {
		// The rollback error adds nothing for the caller: a failed
		// rollback leaves SQLite to roll back when the connection closes.
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: %s: commit: %w", op, err)
	}
	return nil
}
