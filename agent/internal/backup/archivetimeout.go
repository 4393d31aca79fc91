package backup

import (
	"context"
	"sync"

	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"
)

// archiveTimeoutQuery tells whether a server's archive_timeout may be
// asleep (see wakeArchiveTimeout): archive_mode on, archive_timeout set,
// not in recovery, the postmaster started less than checkpoint_timeout
// ago. Also the postmaster's start (which identifies the episode) and
// whether the user may run CHECKPOINT (a superuser, or pg_checkpoint from
// PostgreSQL 15 on).
const archiveTimeoutQuery = `SELECT
  current_setting('archive_mode') <> 'off'
  AND (SELECT setting::int FROM pg_settings WHERE name = 'archive_timeout') > 0
  AND NOT pg_is_in_recovery()
  AND now() - pg_postmaster_start_time() < (SELECT setting::int FROM pg_settings WHERE name = 'checkpoint_timeout') * interval '1 second',
  pg_postmaster_start_time()::text,
  (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
  OR EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pg_checkpoint' AND pg_has_role('pg_checkpoint', 'MEMBER'))`

// archiveWaker remembers, per database, the postmaster start it last woke
// (or warned about), so that each server start is handled once.
type archiveWaker struct {
	mu    sync.Mutex
	woken map[string]string // database → postmaster start
}

// wakeArchiveTimeout makes archive_timeout work from a server's start.
//
// PostgreSQL (15 measured) starts the checkpointer while the startup
// process still runs; a checkpointer that computes its first sleep during
// recovery leaves archive_timeout out of it and sleeps checkpoint_timeout
// (default 5 minutes), and after a clean shutdown nothing wakes it sooner.
// Until then no segment is switched by archive_timeout, however much is
// written: the archive — and so the recovery point — lags by up to
// checkpoint_timeout after every start of the server. Once awake, the
// checkpointer honours archive_timeout for good. A CHECKPOINT wakes it, and
// right after a start it has next to nothing to write; the agent runs one
// once per server start when it may, and says what to grant when it may
// not.
func (e *Executor) wakeArchiveTimeout(ctx context.Context, name string, conn *pgconn.PgConn) {
	rows, err := query(ctx, conn, archiveTimeoutQuery)
	if err != nil || len(rows) != 1 || len(rows[0]) != 3 {
		e.log.Debug("cannot read the archive_timeout settings", zap.String("database", name), zap.Error(err))
		return
	}
	asleep, started, mayCheckpoint := rows[0][0] == "t", rows[0][1], rows[0][2] == "t"
	if !asleep || !e.waker.first(name, started) {
		return
	}
	if !mayCheckpoint {
		e.log.Warn("the server started recently and its archive_timeout only takes effect after checkpoint_timeout, "+
			"until the first checkpoint: WAL may lag the archive that long; grant the backup user pg_checkpoint "+
			"(GRANT pg_checkpoint TO the user) and the agent runs that checkpoint at once",
			zap.String("database", name), zap.String("server_started", started))
		return
	}
	if _, err := query(ctx, conn, "CHECKPOINT"); err != nil {
		e.log.Warn("cannot run the checkpoint that makes archive_timeout take effect after the server's start",
			zap.String("database", name), zap.Error(err))
		e.waker.forget(name)
		return
	}
	e.log.Info("ran a checkpoint so that archive_timeout takes effect now rather than after checkpoint_timeout from the server's start",
		zap.String("database", name), zap.String("server_started", started))
}

// first records started for name and reports whether it is new.
func (w *archiveWaker) first(name, started string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.woken[name] == started {
		return false
	}
	if w.woken == nil {
		w.woken = make(map[string]string)
	}
	w.woken[name] = started
	return true
}

// forget lets the next heartbeat try name again.
func (w *archiveWaker) forget(name string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.woken, name)
}
