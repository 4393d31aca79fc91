package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"

	"flotilla.dev/controlplane/internal/store"
)

var _ store.Store = (*Store)(nil)

// DefaultMaxConns is the pool size when Config.MaxConns is 0.
const DefaultMaxConns = 10

// Config says which database to use and how.
type Config struct {
	// DSN is a libpq connection string, keyword/value
	// ("host=db port=5432 dbname=flotilla user=flotilla") or URL
	// ("postgres://flotilla@db/flotilla"). target_session_attrs is always
	// read-write, whatever it says.
	DSN string
	// MaxConns caps the pool; 0 means DefaultMaxConns.
	MaxConns int32
	// Logger receives what Open did (migrations); nil logs nothing.
	Logger *zap.Logger
}

// Store is the PostgreSQL store. It is safe for concurrent use.
type Store struct {
	pool *pgxpool.Pool
	log  *zap.Logger
	feed *feed
}

// Open connects to the primary the DSN names, migrates its schema to the
// latest version this binary knows, and returns the store. A DSN that cannot
// be parsed says which part is wrong (never the password); a database that
// cannot be reached returns an error wrapping store.ErrUnavailable; a schema
// newer than this binary's returns an error wrapping store.ErrSchemaTooNew
// that names both versions.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	pc, err := poolConfig(cfg)
	if err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = zap.NewNop()
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("store: postgres: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, wrap(err, "postgres: connect to %s", describeTarget(pc.ConnConfig))
	}
	if err := migrate(ctx, pool, log); err != nil {
		pool.Close()
		return nil, err
	}
	return &Store{pool: pool, log: log, feed: newFeed(pc.ConnConfig, log)}, nil
}

// poolConfig parses cfg's DSN into a pool configuration that connects to a
// primary only.
func poolConfig(cfg Config) (*pgxpool.Config, error) {
	if cfg.DSN == "" {
		return nil, errors.New("store: postgres: dsn: required")
	}
	if cfg.MaxConns < 0 {
		return nil, fmt.Errorf("store: postgres: max conns: %d is negative", cfg.MaxConns)
	}
	pc, err := pgxpool.ParseConfig(cfg.DSN)
	if err != nil {
		return nil, fmt.Errorf("store: postgres: dsn: %s", describeParseError(cfg.DSN, err))
	}
	pc.MaxConns = DefaultMaxConns
	if cfg.MaxConns > 0 {
		pc.MaxConns = cfg.MaxConns
	}
	// Writes must reach the primary: after a failover a standby (or the
	// old primary, demoted) refuses them, so a connection is only kept
	// once the server says it accepts writes.
	// The fallback hosts of a multi-host DSN are checked the same way.
	pc.ConnConfig.ValidateConnect = pgconn.ValidateConnectTargetSessionAttrsReadWrite
	return pc, nil
}

// describeTarget names the server and database of c for errors, without
// the password.
func describeTarget(c *pgx.ConnConfig) string {
	return fmt.Sprintf("host=%s port=%d database=%s user=%s", c.Host, c.Port, c.Database, c.User)
}

// Ping checks that the database answers with a query that reads a table.
func (s *Store) Ping(ctx context.Context) error {
	var v *int64
	if err := s.pool.QueryRow(ctx, "SELECT MAX(version) FROM schema_migrations").Scan(&v); err != nil {
		return wrap(err, "ping")
	}
	return nil
}

// Close closes the pool, waiting for connections in use to be returned.
func (s *Store) Close() error {
	s.feed.close()
	s.pool.Close()
	return nil
}

// querier is what the pool and a transaction share.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// inTx runs fn in a transaction and commits it if fn returns nil. fn's error
// is returned unwrapped, so fn decides how its errors read and
// caller-supplied errors (from RegisterAgent's build) reach the caller
// unchanged.
func (s *Store) inTx(ctx context.Context, op string, fn func(pgx.Tx) error) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return wrap(err, "%s: begin", op)
	}
	if err := fn(tx); err != nil {
		// The rollback error adds nothing for the caller: PostgreSQL
		// rolls back when the connection is closed.
		_ = tx.Rollback(ctx)
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return wrap(err, "%s: commit", op)
	}
	return nil
}
