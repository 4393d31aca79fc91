package backup

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"flotilla.dev/agent/internal/backup/objstore"
	"flotilla.dev/agent/internal/executor"
	flotillav1 "flotilla.dev/gen/flotilla/v1"
)

// drillDatabase is the database a drill restores into, on its scratch server.
const drillDatabase = "flotilla_drill"

// drill restores a dump into a scratch server and checks it against its
// manifest. A failed check returns the result with the error, so that the
// catalog records the failure.
func (e *Executor) drill(ctx context.Context, name string, store objstore.Store, backupName string, progress executor.Progress) (*flotillav1.DrillResult, error) {
	started := e.clock.Now().UTC()
	fail := func(format string, args ...any) error {
		return fmt.Errorf("drill of database %s: "+format, append([]any{name}, args...)...)
	}
	m, err := findBackup(ctx, store, name, backupName, TypeDump, nil)
	if err != nil {
		return nil, fail("%w", err)
	}
	res := &flotillav1.DrillResult{Database: name, Backup: storedBackup(m), StartedAt: timestamppb.New(started)}
	failed := func(err error) (*flotillav1.DrillResult, error) {
		res.Failure = err.Error()
		res.Rto = durationpb.New(e.clock.Since(started))
		e.log.Warn("drill failed", zap.String("database", name), zap.String("backup", m.Name), zap.Error(err))
		return res, fail("backup %s: %w", m.Name, err)
	}
	cred, err := serverCred()
	if err != nil {
		return failed(err)
	}
	dir, err := e.scratchDir(cred)
	if err != nil {
		return failed(err)
	}
	defer os.RemoveAll(dir)
	progress(&flotillav1.CommandProgress{Message: "downloading " + m.Name, Total: m.SizeBytes})
	archive := filepath.Join(dir, "archive.dump")
	if err := download(ctx, store, m, archive); err != nil {
		return failed(err)
	}
	srv, err := e.startScratch(ctx, dir, cred)
	if err != nil {
		return failed(err)
	}
	defer func() {
		if err := srv.stop(true); err != nil {
			e.log.Warn("cannot stop the drill's scratch server", zap.String("data_directory", srv.dataDir), zap.Error(err))
		}
	}()
	progress(&flotillav1.CommandProgress{Message: "pg_restore of " + m.Name + " into a scratch server"})
	if err := e.restoreArchive(ctx, srv.conninfo("postgres"), "", drillDatabase, archive, false); err != nil {
		return failed(err)
	}
	res.Rto = durationpb.New(e.clock.Since(started))
	if err := e.checkDrill(ctx, srv.conninfo(drillDatabase), m, res, started); err != nil {
		return failed(err)
	}
	res.Success = true
	e.log.Info("drill succeeded", zap.String("database", name), zap.String("backup", m.Name),
		zap.Int("tables", len(res.Tables)), zap.Duration("rto", res.GetRto().AsDuration()), zap.Duration("rpo", res.GetRpo().AsDuration()))
	return res, nil
}

// startScratch creates and starts a server in dir, reachable only through
// its unix socket.
func (e *Executor) startScratch(ctx context.Context, dir string, cred *syscall.Credential) (*pgServer, error) {
	port, err := freePort()
	if err != nil {
		return nil, fmt.Errorf("a port for the scratch server: %w", err)
	}
	srv := &pgServer{e: e, dataDir: filepath.Join(dir, "data"), sockDir: dir, port: port,
		logPath: filepath.Join(dir, "server.log"), cred: cred}
	if err := srv.initdb(ctx); err != nil {
		return nil, fmt.Errorf("initdb of the scratch server: %w", err)
	}
	// Durability does not matter for a copy that is thrown away.
	if err := srv.start(ctx, true, 2*time.Minute, "listen_addresses=", "fsync=off", "full_page_writes=off",
		"synchronous_commit=off", "max_connections=20", "shared_buffers=32MB", "archive_mode=off",
		// The agent's systemd unit denies writable executable memory, which
		// LLVM's JIT needs; its children inherit that.
		"jit=off"); err != nil {
		return nil, err
	}
	return srv, nil
}

// checkDrill compares the restored database's tables with the manifest
// and measures the RPO from its newest row.
func (e *Executor) checkDrill(ctx context.Context, db Database, m Manifest, res *flotillav1.DrillResult, started time.Time) error {
	conn, err := dial(ctx, db, "")
	if err != nil {
		return err
	}
	defer closeConn(ctx, conn)
	got, err := tableStats(ctx, conn)
	if err != nil {
		return err
	}
	restored := map[string]TableStat{}
	for _, t := range got {
		restored[t.Name()] = t
	}
	var problems []string
	for _, want := range m.Tables {
		r, ok := restored[want.Name()]
		res.Tables = append(res.Tables, &flotillav1.TableCheck{Table: want.Name(), ExpectedRows: want.Rows,
			RestoredRows: r.Rows, ChecksumOk: ok && r.Checksum == want.Checksum})
		switch {
		case !ok:
			problems = append(problems, want.Name()+" is missing")
		case r.Rows != want.Rows:
			problems = append(problems, fmt.Sprintf("%s has %d rows, the manifest %d", want.Name(), r.Rows, want.Rows))
		case r.Checksum != want.Checksum:
			problems = append(problems, want.Name()+"'s rows differ from the manifest's checksum")
		}
		delete(restored, want.Name())
	}
	for n := range restored {
		problems = append(problems, n+" is not in the manifest")
	}
	newest, err := newestRow(ctx, conn, m.StartedAt)
	if err != nil {
		return err
	}
	point := m.StartedAt
	if !newest.IsZero() {
		res.NewestRowAt, point = timestamppb.New(newest), newest
	}
	res.Rpo = durationpb.New(started.Sub(point))
	if len(problems) > 0 {
		return fmt.Errorf("the restored copy does not match the manifest: %s", strings.Join(problems, "; "))
	}
	return nil
}

// download copies the archive of m to path and checks its size and SHA-256.
func download(ctx context.Context, store objstore.Store, m Manifest, path string) error {
	rc, err := store.Open(ctx, m.File)
	if err != nil {
		return err
	}
	defer rc.Close()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	got, err := objstore.DigestReader(io.TeeReader(rc, f))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("download %s: %w", store.URI(m.File), err)
	}
	if want := (objstore.Digest{Size: int64(m.SizeBytes), SHA256: m.SHA256}); got != want {
		return fmt.Errorf("%w: %s has %d bytes with SHA-256 %s, its manifest says %d bytes with SHA-256 %s",
			objstore.ErrMismatch, store.URI(m.File), got.Size, got.SHA256, want.Size, want.SHA256)
	}
	return nil
}
