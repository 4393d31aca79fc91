package backup

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"go.uber.org/zap"
	"google.golang.org/protobuf/types/known/durationpb"

	"flotilla.dev/agent/internal/backup/objstore"
	"flotilla.dev/agent/internal/executor"
	flotillav1 "flotilla.dev/gen/flotilla/v1"
	"flotilla.dev/pkg/validate"
)

// checkBackupName checks a backup's name as commands give it: empty, or
// "<database>-<time>[-n]" in the grammar of database names plus digits.
func checkBackupName(field, name string) error {
	if name == "" {
		return nil
	}
	if len(name) > 100 || objstore.CheckKey(name) != nil || filepath.Base(name) != name || name[0] == '.' {
		return executor.Reject("%s: %q is not a backup name (e.g. app-20261207T020000Z)", field, truncateText(name))
	}
	return nil
}

func validateRestore(r *flotillav1.RestoreCommand) error {
	if err := checkBackupName("restore.backup", r.GetBackup()); err != nil {
		return err
	}
	switch t := r.GetTarget().(type) {
	case *flotillav1.RestoreCommand_Dump:
		if err := validate.DatabaseName(t.Dump.GetNewDatabase()); err != nil {
			return executor.Reject("restore.dump.new_database: %v", err)
		}
	case *flotillav1.RestoreCommand_PointInTime:
		p := t.PointInTime
		if _, err := parseTarget(p.GetTargetTime()); err != nil {
			return executor.Reject("restore.point_in_time.target_time: %v", err)
		}
		if d := p.GetDataDirectory(); !filepath.IsAbs(d) || filepath.Clean(d) != d || d == "/" {
			return executor.Reject("restore.point_in_time.data_directory: must be a clean absolute path, got %q", truncateText(d))
		}
		if p.GetPort() < 1024 || p.GetPort() > 65535 {
			return executor.Reject("restore.point_in_time.port: must be from 1024 to 65535, got %d", p.GetPort())
		}
	default:
		return executor.Reject("restore: set exactly one of dump, point_in_time")
	}
	return nil
}

// parseTarget parses a point-in-time target: "latest" (zero time) or RFC
// 3339 with an explicit offset.
func parseTarget(s string) (time.Time, error) {
	if s == "latest" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf(`want "latest" or RFC 3339 with an explicit offset (2026-12-07T09:15:00+01:00 or …Z), got %q`, truncateText(s))
	}
	return t, nil
}

// restore runs a restore command.
func (e *Executor) restore(ctx context.Context, name string, store objstore.Store, r *flotillav1.RestoreCommand, progress executor.Progress) (*flotillav1.RestoreResult, error) {
	if p := r.GetPointInTime(); p != nil {
		return e.restorePITR(ctx, name, store, r.GetBackup(), p, progress)
	}
	started := e.clock.Now()
	d := r.GetDump()
	fail := func(format string, args ...any) error {
		return fmt.Errorf("restore of database %s into %s: "+format, append([]any{name, d.GetNewDatabase()}, args...)...)
	}
	m, err := findBackup(ctx, store, name, r.GetBackup(), TypeDump, nil)
	if err != nil {
		return nil, fail("%w", err)
	}
	db := e.cfg.Databases[name].withDefaults(name)
	password, err := db.password()
	if err != nil {
		return nil, fail("backup.databases.%s.password_file: %w", name, err)
	}
	work, err := os.MkdirTemp(e.dir, ".restore-")
	if err != nil {
		return nil, fail("working directory: %w", err)
	}
	defer os.RemoveAll(work)
	progress(&flotillav1.CommandProgress{Message: "downloading " + m.Name, Total: m.SizeBytes})
	archive := filepath.Join(work, "archive.dump")
	if err := download(ctx, store, m, archive); err != nil {
		return nil, fail("%w", err)
	}
	progress(&flotillav1.CommandProgress{Message: "pg_restore of " + m.Name + " into " + d.GetNewDatabase()})
	if err := e.restoreArchive(ctx, db, password, d.GetNewDatabase(), archive, d.GetReplace()); err != nil {
		return nil, fail("%w", err)
	}
	e.log.Info("restore finished", zap.String("database", name), zap.String("backup", m.Name),
		zap.String("new_database", d.GetNewDatabase()), zap.Bool("replace", d.GetReplace()))
	return &flotillav1.RestoreResult{Database: name, Backup: storedBackup(m), NewDatabase: d.GetNewDatabase(),
		Duration: durationpb.New(e.clock.Since(started)), Replaced: d.GetReplace()}, nil
}

// errDatabaseExists is returned when a restore's new database exists and
// replace is not set.
var errDatabaseExists = errors.New("the database exists; restore into a new name, or set replace to drop and re-create it")

// restoreArchive creates newDB on db's server (dropping it first when
// replace is set) and pg_restores archive into it. Objects are owned by
// the restoring user (--no-owner); any error stops the restore.
func (e *Executor) restoreArchive(ctx context.Context, db Database, password, newDB, archive string, replace bool) error {
	admin := db
	admin.DBName = "postgres"
	conn, err := dial(ctx, admin, password)
	if err != nil {
		return err
	}
	rows, err := query(ctx, conn, "SELECT count(*) FROM pg_database WHERE datname = '"+sqlString(newDB)+"'")
	if err == nil && rows[0][0] != "0" {
		if !replace {
			err = fmt.Errorf("database %s: %w", newDB, errDatabaseExists)
		} else {
			err = conn.Exec(ctx, "DROP DATABASE "+quoteIdent(newDB)+" WITH (FORCE)").Close()
		}
	}
	if err == nil {
		err = conn.Exec(ctx, "CREATE DATABASE "+quoteIdent(newDB)+" TEMPLATE template0").Close()
	}
	closeConn(ctx, conn)
	if err != nil {
		return err
	}
	target := db
	target.DBName = newDB
	_, err = e.runPG(ctx, pgRun{bin: e.pgRestore, db: db, password: password, args: []string{
		"--dbname=" + target.conninfo(), "--no-owner", "--exit-on-error", "--no-password", archive}})
	return err
}

// sqlString escapes s for a standard SQL string literal.
func sqlString(s string) string {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '\'' {
			out = append(out, '\'')
		}
		out = append(out, s[i])
	}
	return string(out)
}
