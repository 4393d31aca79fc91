package backup

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
	"google.golang.org/protobuf/types/known/durationpb"

	"flotilla.dev/agent/internal/backup/objstore"
	"flotilla.dev/agent/internal/executor"
	flotillav1 "flotilla.dev/gen/flotilla/v1"
)

// recoveryTimeout bounds how long a point-in-time restore waits for the
// restored server to replay WAL up to its target and promote.
const recoveryTimeout = 6 * time.Hour

// restorePITR restores a base backup into a new data directory, replays
// archived WAL up to the target on the latest timeline, and leaves the
// promoted server running on the requested port.
func (e *Executor) restorePITR(ctx context.Context, name string, store objstore.Store, backupName string, p *flotillav1.PointInTimeTarget, progress executor.Progress) (*flotillav1.RestoreResult, error) {
	started := e.clock.Now()
	fail := func(format string, args ...any) error {
		return fmt.Errorf("point-in-time restore of database %s into %s: "+format, append([]any{name, p.GetDataDirectory()}, args...)...)
	}
	if e.agentBinary == "" {
		return nil, fail("this agent was started without its binary's path, which restored servers need as restore_command")
	}
	target, _ := parseTarget(p.GetTargetTime())
	m, err := findBackup(ctx, store, name, backupName, TypeBase, func(m Manifest) bool {
		return target.IsZero() || m.StartedAt.Before(target)
	})
	if err != nil {
		return nil, fail("%w", err)
	}
	if !portFree(int(p.GetPort())) {
		return nil, fail("port %d of 127.0.0.1 is in use", p.GetPort())
	}
	cred, err := serverCred()
	if err != nil {
		return nil, fail("%w", err)
	}
	dataDir := p.GetDataDirectory()
	if err := newDataDirectory(dataDir); err != nil {
		return nil, fail("%w", err)
	}
	progress(&flotillav1.CommandProgress{Message: "downloading and unpacking " + m.Name, Total: m.SizeBytes})
	if err := e.unpackBase(ctx, store, m, dataDir); err != nil {
		return nil, fail("%w; the data directory is left for inspection", err)
	}
	srv := &pgServer{e: e, dataDir: dataDir, sockDir: dataDir, port: int(p.GetPort()),
		logPath: filepath.Join(dataDir, "flotilla-restore.log"), cred: cred}
	if err := e.configureRecovery(srv, name, p.GetTargetTime(), target); err != nil {
		return nil, fail("%w", err)
	}
	if err := chownTree(dataDir, cred); err != nil {
		return nil, fail("%w", err)
	}
	progress(&flotillav1.CommandProgress{Message: "replaying archived WAL up to " + p.GetTargetTime()})
	// pg_ctl returns once the server accepts connections (a hot standby
	// when consistent, else once promoted) or fails if it exits.
	if err := srv.start(ctx, true, recoveryTimeout); err != nil {
		return nil, fail("%w", err)
	}
	if err := waitPromoted(ctx, srv); err != nil {
		_ = srv.stop(true)
		return nil, fail("%w; the server was stopped and its data directory left for inspection", err)
	}
	timeline, err := e.promotedTimeline(ctx, srv, name)
	if err != nil {
		e.log.Warn("cannot read the restored server's timeline; reporting the newest history file's", zap.Error(err))
		timeline = currentTimeline(dataDir)
	}
	history, err := timelineHistory(dataDir, timeline)
	if err != nil {
		e.log.Warn("cannot read the restored server's timeline history", zap.Uint32("timeline", timeline), zap.Error(err))
	}
	res := &flotillav1.RestoreResult{Database: name, Backup: storedBackup(m), DataDirectory: dataDir, Port: p.GetPort(),
		TargetTime: p.GetTargetTime(), Timeline: timeline, WalSegmentsRestored: restoredSegments(srv.logPath),
		Duration: durationpb.New(e.clock.Since(started)), TimelineHistory: history}
	e.log.Info("point-in-time restore finished; the restored server runs", zap.String("database", name),
		zap.String("backup", m.Name), zap.String("data_directory", dataDir), zap.Uint32("port", p.GetPort()),
		zap.String("target_time", p.GetTargetTime()), zap.Uint32("timeline", res.Timeline), zap.Int("timeline_switches", len(history)))
	return res, nil
}

// newDataDirectory creates dir (0700), or accepts it when it exists empty.
func newDataDirectory(dir string) error {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return os.MkdirAll(dir, 0o700)
	case err != nil:
		return err
	case len(entries) > 0:
		return fmt.Errorf("data directory %s is not empty: a restore never writes over existing files", dir)
	}
	return os.Chmod(dir, 0o700)
}

// unpackBase downloads the base backup's archive, checks its SHA-256 and
// unpacks it into dataDir.
func (e *Executor) unpackBase(ctx context.Context, store objstore.Store, m Manifest, dataDir string) error {
	work, err := os.MkdirTemp(e.dir, ".pitr-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	archive := filepath.Join(work, "base.tar.gz")
	if err := download(ctx, store, m, archive); err != nil {
		return err
	}
	f, err := os.Open(archive)
	if err != nil {
		return err
	}
	defer f.Close()
	return walkTarGz(f, func(h *tar.Header, r io.Reader) error { return extractEntry(dataDir, h, r) })
}

// extractEntry writes one tar entry under root, refusing paths that leave it.
func extractEntry(root string, h *tar.Header, r io.Reader) error {
	name := filepath.Clean(h.Name)
	if filepath.IsAbs(name) || name == ".." || strings.HasPrefix(name, "../") {
		return fmt.Errorf("entry %q leaves the data directory", h.Name)
	}
	path := filepath.Join(root, name)
	mode := os.FileMode(h.Mode).Perm()
	switch h.Typeflag {
	case tar.TypeDir:
		return os.MkdirAll(path, mode|0o700)
	case tar.TypeReg:
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return err
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode|0o600)
		if err != nil {
			return err
		}
		_, err = io.Copy(f, r)
		return errors.Join(err, f.Close())
	case tar.TypeSymlink:
		return fmt.Errorf("symbolic link %q (a tablespace?) is not supported", h.Name)
	default:
		return nil
	}
}

// configureRecovery writes recovery.signal and the recovery settings.
func (e *Executor) configureRecovery(srv *pgServer, name, targetText string, target time.Time) error {
	fetch := shellJoin([]string{e.agentBinary, "wal-fetch", "-config", e.configPath, "-database", name}) + " %f %p"
	settings := []string{
		"restore_command = '" + strings.ReplaceAll(fetch, "'", "''") + "'",
		"recovery_target_timeline = 'latest'",
		"recovery_target_action = 'promote'",
		// The restored server must never archive into the live cluster's archive.
		"archive_mode = 'off'",
		// The agent's systemd unit denies writable executable memory, which
		// LLVM's JIT needs, and the server inherits that.
		"jit = 'off'",
		"listen_addresses = '127.0.0.1'",
		"port = " + strconv.Itoa(srv.port),
		"unix_socket_directories = '" + strings.ReplaceAll(srv.sockDir, "'", "''") + "'",
	}
	if !target.IsZero() {
		settings = append(settings, "recovery_target_time = '"+target.UTC().Format("2006-01-02 15:04:05.999999")+"+00'",
			"recovery_target_inclusive = 'true'")
	}
	f, err := os.OpenFile(filepath.Join(srv.dataDir, "postgresql.auto.conf"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(f, "\n# Added by flotilla-agent for a point-in-time restore to %s.\n%s\n", targetText, strings.Join(settings, "\n"))
	if err = errors.Join(err, f.Close()); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(srv.dataDir, "recovery.signal"), nil, 0o600)
}

// waitPromoted waits until recovery ended and the server was promoted
// (PostgreSQL removes recovery.signal), or the server stopped.
func waitPromoted(ctx context.Context, srv *pgServer) error {
	ctx, cancel := context.WithTimeout(ctx, recoveryTimeout)
	defer cancel()
	for {
		if _, err := os.Stat(filepath.Join(srv.dataDir, "recovery.signal")); errors.Is(err, fs.ErrNotExist) && srv.running(ctx) {
			return nil
		}
		if _, err := os.Stat(filepath.Join(srv.dataDir, "postmaster.pid")); errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("the restored server stopped during recovery: %s", srv.logTail())
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("recovery did not finish: %w; the server's log: %s", ctx.Err(), srv.logTail())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// promotedTimeline connects to the restored server through its socket with
// the database's configured user, waits until it is out of recovery and
// returns the timeline it writes WAL on.
func (e *Executor) promotedTimeline(ctx context.Context, srv *pgServer, name string) (uint32, error) {
	db := e.cfg.Databases[name].withDefaults(name)
	password, err := db.password()
	if err != nil {
		return 0, err
	}
	target := srv.conninfo(db.DBName)
	target.User = db.User
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		conn, err := dial(ctx, target, password)
		if err != nil {
			return 0, err
		}
		rows, err := query(ctx, conn, `SELECT CASE WHEN pg_is_in_recovery() THEN '' ELSE substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8) END`)
		closeConn(ctx, conn)
		if err != nil {
			return 0, err
		}
		if tli := rows[0][0]; tli != "" {
			n, err := strconv.ParseUint(tli, 16, 32)
			return uint32(n), err
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("the restored server is still in recovery: %w", ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// currentTimeline is the highest timeline with a history file in pg_wal
// (1 when there is none).
func currentTimeline(dataDir string) uint32 {
	matches, _ := filepath.Glob(filepath.Join(dataDir, "pg_wal", "*.history"))
	sort.Strings(matches)
	if len(matches) == 0 {
		return 1
	}
	n, err := strconv.ParseUint(strings.TrimSuffix(filepath.Base(matches[len(matches)-1]), ".history"), 16, 32)
	if err != nil {
		return 0
	}
	return uint32(n)
}

// restoredSegments counts the WAL segments the server's log says it
// restored from the archive.
func restoredSegments(logPath string) uint32 {
	b, _ := os.ReadFile(logPath)
	var n uint32
	for _, line := range strings.Split(string(b), "\n") {
		if i := strings.Index(line, `restored log file "`); i >= 0 && !strings.Contains(line[i:], ".history") {
			n++
		}
	}
	return n
}

// timelineHistory reads the history file of timeline in dataDir's pg_wal:
// one TimelineSwitch per line ("parent-TLI<TAB>switch-LSN<TAB>reason"),
// comments and blank lines skipped. Timeline 1 has none.
func timelineHistory(dataDir string, timeline uint32) ([]*flotillav1.TimelineSwitch, error) {
	if timeline <= 1 {
		return nil, nil
	}
	b, err := os.ReadFile(filepath.Join(dataDir, "pg_wal", fmt.Sprintf("%08X.history", timeline)))
	if err != nil {
		return nil, err
	}
	var out []*flotillav1.TimelineSwitch
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.SplitN(line, "\t", 3)
		tli, err := strconv.ParseUint(fields[0], 10, 32)
		if err != nil || len(fields) < 2 {
			return out, fmt.Errorf("timeline history %08X.history: unreadable line %q", timeline, truncateText(line))
		}
		sw := &flotillav1.TimelineSwitch{Timeline: uint32(tli), SwitchLsn: fields[1]}
		if len(fields) == 3 {
			sw.Reason = fields[2]
		}
		out = append(out, sw)
	}
	return out, nil
}
