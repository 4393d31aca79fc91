package backup

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// TableStat is one table's row count and checksum, as the manifest records
// them at backup time and a drill compares them after a restore.
type TableStat struct {
	Schema string `json:"schema"`
	Table  string `json:"table"`
	Rows   int64  `json:"rows"`
	// Checksum is an order-independent sum of the rows' MD5s (decimal);
	// two copies of a table with the same rows have the same checksum.
	Checksum string `json:"checksum"`
}

// Name is the table's schema-qualified name.
func (t TableStat) Name() string { return t.Schema + "." + t.Table }

// sessionSettings make a row's text form the same on every server and
// session: the checksums compare a restored copy with the original.
const sessionSettings = `SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'postgres';
SET extra_float_digits = 3; SET bytea_output = 'hex'`

// tablesQuery lists the ordinary tables of the user's schemas.
const tablesQuery = `SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\_%'
ORDER BY 1, 2`

// dial opens a connection to db with the session settings of the checks.
func dial(ctx context.Context, db Database, password string) (*pgconn.PgConn, error) {
	cfg, err := pgconn.ParseConfig(db.conninfo())
	if err != nil {
		return nil, fmt.Errorf("connection settings: %w", err)
	}
	cfg.Password = password
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to database %s: %w", db.DBName, err)
	}
	if err := conn.Exec(ctx, sessionSettings).Close(); err != nil {
		closeConn(ctx, conn)
		return nil, fmt.Errorf("session settings: %w", err)
	}
	return conn, nil
}

// closeConn closes conn, giving it a moment even when ctx is done.
func closeConn(ctx context.Context, conn *pgconn.PgConn) {
	closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	_ = conn.Close(closeCtx)
}

// query runs sql (no parameters) and returns its rows as text.
func query(ctx context.Context, conn *pgconn.PgConn, sql string) ([][]string, error) {
	res := conn.ExecParams(ctx, sql, nil, nil, nil, nil).Read()
	if res.Err != nil {
		return nil, res.Err
	}
	rows := make([][]string, len(res.Rows))
	for i, r := range res.Rows {
		rows[i] = make([]string, len(r))
		for j, v := range r {
			rows[i][j] = string(v)
		}
	}
	return rows, nil
}

// quoteIdent quotes an SQL identifier.
func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// snapshot is a read-only repeatable-read transaction whose snapshot
// pg_dump imports (--snapshot), so that the table statistics describe
// exactly the rows of the dump.
type snapshot struct {
	conn *pgconn.PgConn
	id   string
}

// openSnapshot begins the transaction and exports its snapshot.
func openSnapshot(ctx context.Context, db Database, password string) (*snapshot, error) {
	conn, err := dial(ctx, db, password)
	if err != nil {
		return nil, err
	}
	if err := conn.Exec(ctx, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").Close(); err != nil {
		closeConn(ctx, conn)
		return nil, fmt.Errorf("begin the snapshot: %w", err)
	}
	rows, err := query(ctx, conn, "SELECT pg_export_snapshot()")
	if err != nil || len(rows) != 1 {
		closeConn(ctx, conn)
		return nil, fmt.Errorf("export the snapshot: %w", errors.Join(err, errors.New("no snapshot returned")))
	}
	return &snapshot{conn: conn, id: rows[0][0]}, nil
}

func (s *snapshot) close(ctx context.Context) { closeConn(ctx, s.conn) }

// tableStats counts and checksums every table the connection's database has.
func tableStats(ctx context.Context, conn *pgconn.PgConn) ([]TableStat, error) {
	tables, err := query(ctx, conn, tablesQuery)
	if err != nil {
		return nil, fmt.Errorf("list the tables: %w", err)
	}
	stats := make([]TableStat, 0, len(tables))
	for _, t := range tables {
		st := TableStat{Schema: t[0], Table: t[1]}
		sql := "SELECT count(*), coalesce(sum(('x' || substr(md5(t::text), 1, 15))::bit(60)::bigint), 0) FROM ONLY " +
			quoteIdent(st.Schema) + "." + quoteIdent(st.Table) + " AS t"
		rows, err := query(ctx, conn, sql)
		if err != nil {
			return nil, fmt.Errorf("count the rows of %s: %w", st.Name(), err)
		}
		if st.Rows, err = strconv.ParseInt(rows[0][0], 10, 64); err != nil {
			return nil, fmt.Errorf("count the rows of %s: %w", st.Name(), err)
		}
		st.Checksum = rows[0][1]
		stats = append(stats, st)
	}
	return stats, nil
}

// newestRow returns the newest value not after limit of any timestamp
// column of the connection's database (zero when there is none): how
// fresh the data is. Values after limit (a schedule, an expiry) are not
// writes and are ignored.
func newestRow(ctx context.Context, conn *pgconn.PgConn, limit time.Time) (time.Time, error) {
	cols, err := query(ctx, conn, `SELECT n.nspname, c.relname, a.attname FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
AND a.atttypid IN ('timestamptz'::regtype, 'timestamp'::regtype)
AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\_%' ORDER BY 1, 2, 3`)
	if err != nil {
		return time.Time{}, fmt.Errorf("list the timestamp columns: %w", err)
	}
	var newest time.Time
	lim := strconv.FormatFloat(float64(limit.UnixMicro())/1e6, 'f', 6, 64)
	for _, c := range cols {
		col := quoteIdent(c[2])
		sql := fmt.Sprintf("SELECT extract(epoch FROM max(%s))::text FROM ONLY %s.%s WHERE extract(epoch FROM %s) <= %s",
			col, quoteIdent(c[0]), quoteIdent(c[1]), col, lim)
		rows, err := query(ctx, conn, sql)
		if err != nil {
			return time.Time{}, fmt.Errorf("newest %s.%s.%s: %w", c[0], c[1], c[2], err)
		}
		if len(rows) == 0 || rows[0][0] == "" {
			continue
		}
		f, err := strconv.ParseFloat(rows[0][0], 64)
		if err != nil || math.IsInf(f, 0) {
			continue
		}
		sec, frac := math.Modf(f)
		if t := time.Unix(int64(sec), int64(frac*1e9)).UTC(); t.After(newest) {
			newest = t
		}
	}
	return newest, nil
}
