package backup

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"

	flotillav1 "flotilla.dev/gen/flotilla/v1"
)

// statsTimeout bounds the reading of one database's statistics, so that a
// server that does not answer never delays a heartbeat for long.
const statsTimeout = 2 * time.Second

// connectionsQuery counts the sessions on the current database, except the
// one asking.
const connectionsQuery = `SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid()`

// Stats returns the number of open connections (pg_stat_activity) of each
// configured database, named as in backup.databases, in name order. A
// database that cannot be read within a short timeout is left out and the
// reason logged at debug level: the heartbeat must not stall or fail
// because a database is down (the application's health reports that).
//
// Each call opens and closes one short connection per database, which
// keeps no session open between heartbeats.
func (e *Executor) Stats(ctx context.Context) []*flotillav1.DatabaseStats {
	names := sortedKeys(e.cfg.Databases)
	results := make([]*flotillav1.DatabaseStats, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, err := e.connections(ctx, name)
			if err != nil {
				e.log.Debug("cannot read database connections", zap.String("database", name), zap.Error(err))
				return
			}
			results[i] = &flotillav1.DatabaseStats{Name: name, Connections: n}
		}()
	}
	wg.Wait()
	stats := results[:0]
	for _, s := range results {
		if s != nil {
			stats = append(stats, s)
		}
	}
	return stats
}

// connections counts the other sessions on database name.
func (e *Executor) connections(ctx context.Context, name string) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, statsTimeout)
	defer cancel()
	db := e.cfg.Databases[name].withDefaults(name)
	cfg, err := pgconn.ParseConfig(db.conninfo())
	if err != nil {
		return 0, fmt.Errorf("connection settings: %w", err)
	}
	if db.PasswordFile != "" {
		if cfg.Password, err = readPassword(db.PasswordFile); err != nil {
			return 0, err
		}
	}
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return 0, fmt.Errorf("connect: %w", err)
	}
	defer func() {
		// The caller's context may be done by now; closing still deserves
		// a moment to tell the server goodbye.
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		_ = conn.Close(closeCtx)
	}()
	// pgconn, not pgx: one text column needs no type system, and pgx's
	// (pgtype, database/sql, encoding/xml) would be a quarter of the
	// agent's binary.
	res := conn.ExecParams(ctx, connectionsQuery, nil, nil, nil, nil).Read()
	if res.Err != nil {
		return 0, fmt.Errorf("count connections: %w", res.Err)
	}
	if len(res.Rows) != 1 || len(res.Rows[0]) != 1 {
		return 0, fmt.Errorf("count connections: got %d rows, want 1", len(res.Rows))
	}
	n, err := strconv.ParseInt(string(res.Rows[0][0]), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("count connections: %w", err)
	}
	return n, nil
}
