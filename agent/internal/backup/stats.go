package backup

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"sync"
	"time"

	"go.uber.org/zap"
	"google.golang.org/protobuf/types/known/timestamppb"

	flotillav1 "flotilla.dev/gen/flotilla/v1"
)

// statsTimeout bounds the reading of one database's statistics, so that a
// server that does not answer never delays a heartbeat for long.
const statsTimeout = 2 * time.Second

// connectionsQuery counts the sessions on the current database, except the
// one asking.
const connectionsQuery = `SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid()`

// Stats returns the number of open connections (pg_stat_activity) and the
// WAL archiving (pg_stat_archiver, when archive_mode is on, with the
// continuity of the archive its WAL destination holds) of each configured
// database, named as in backup.databases, in name order. A
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
			st, segmentSize, err := e.connections(ctx, name)
			if err != nil {
				e.log.Debug("cannot read database connections", zap.String("database", name), zap.Error(err))
				return
			}
			if st.WalArchiver != nil {
				e.addWALContinuity(name, segmentSize, st.WalArchiver)
			}
			results[i] = st
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

// archiverQuery reads pg_stat_archiver and the timeline the server writes
// (empty on a standby), when the server archives WAL.
const archiverQuery = `SELECT current_setting('archive_mode'), archived_count, coalesce(last_archived_wal, ''),
coalesce(extract(epoch FROM last_archived_time)::text, ''), failed_count, coalesce(last_failed_wal, ''),
coalesce(extract(epoch FROM last_failed_time)::text, ''),
CASE WHEN pg_is_in_recovery() THEN '' ELSE substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8) END,
(SELECT setting FROM pg_settings WHERE name = 'wal_segment_size')
FROM pg_stat_archiver`

// connections reads the other sessions on database name and the server's
// WAL archiving and wal_segment_size (0 when not read).
func (e *Executor) connections(ctx context.Context, name string) (*flotillav1.DatabaseStats, uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, statsTimeout)
	defer cancel()
	db := e.cfg.Databases[name].withDefaults(name)
	password, err := db.password()
	if err != nil {
		return nil, 0, err
	}
	// pgconn, not pgx: a few text columns need no type system, and pgx's
	// (pgtype, database/sql, encoding/xml) would be a quarter of the
	// agent's binary.
	conn, err := dial(ctx, db, password)
	if err != nil {
		return nil, 0, err
	}
	defer closeConn(ctx, conn)
	rows, err := query(ctx, conn, connectionsQuery)
	if err != nil {
		return nil, 0, fmt.Errorf("count connections: %w", err)
	}
	if len(rows) != 1 || len(rows[0]) != 1 {
		return nil, 0, fmt.Errorf("count connections: got %d rows, want 1", len(rows))
	}
	n, err := strconv.ParseInt(rows[0][0], 10, 64)
	if err != nil {
		return nil, 0, fmt.Errorf("count connections: %w", err)
	}
	st := &flotillav1.DatabaseStats{Name: name, Connections: n}
	var segmentSize uint64
	if rows, err := query(ctx, conn, archiverQuery); err == nil && len(rows) == 1 && rows[0][0] != "off" {
		st.WalArchiver = archiverStats(rows[0])
		segmentSize, _ = strconv.ParseUint(rows[0][8], 10, 64)
		e.wakeArchiveTimeout(ctx, name, conn)
	} else if err != nil {
		e.log.Debug("cannot read pg_stat_archiver", zap.String("database", name), zap.Error(err))
	}
	return st, segmentSize, nil
}

// archiverStats converts a row of archiverQuery.
func archiverStats(r []string) *flotillav1.WalArchiverStats {
	a := &flotillav1.WalArchiverStats{LastArchivedWal: r[2], LastFailedWal: r[5]}
	a.ArchivedCount, _ = strconv.ParseInt(r[1], 10, 64)
	a.FailedCount, _ = strconv.ParseInt(r[4], 10, 64)
	a.LastArchivedAt = epochTimestamp(r[3])
	a.LastFailedAt = epochTimestamp(r[6])
	if tli, err := strconv.ParseUint(r[7], 16, 32); err == nil {
		a.Timeline = uint32(tli)
	}
	return a
}

// epochTimestamp converts seconds since the epoch (text), or nil for "".
func epochTimestamp(s string) *timestamppb.Timestamp {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return nil
	}
	sec, frac := math.Modf(f)
	return timestamppb.New(time.Unix(int64(sec), int64(frac*1e9)))
}
