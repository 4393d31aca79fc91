package backup

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	"go.uber.org/zap"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"flotilla.dev/agent/internal/executor"
	flotillav1 "flotilla.dev/gen/flotilla/v1"
	"flotilla.dev/pkg/command"
	"flotilla.dev/pkg/validate"
)

// DefaultProgressInterval is the least time between two progress reports
// of a running backup.
const DefaultProgressInterval = time.Second

// Executor runs backup commands. It is safe for concurrent use; two backups
// of the same database never run at once.
type Executor struct {
	cfg       Config
	dir       string
	pgDump    string
	pgRestore string
	log       *zap.Logger

	// Tests replace these before the first command.
	clock            clockwork.Clock
	progressInterval time.Duration
	tempDir          string // parent of temporary passfiles; "" = os.TempDir()

	mu      sync.Mutex
	running map[string]bool // databases being backed up
}

var _ executor.Executor = (*Executor)(nil)

// New validates cfg, creates the backup directory (default
// <stateDir>/backups, mode 0700), removes partial files an interrupted
// backup left there, and finds pg_dump and pg_restore: the configured
// paths, else PATH, else the newest /usr/lib/postgresql/*/bin. The
// binaries are required only when databases are configured.
func New(cfg Config, stateDir string, log *zap.Logger) (*Executor, error) {
	if log == nil {
		return nil, errors.New("backup: a logger is required")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	e := &Executor{
		cfg:              cfg,
		dir:              cfg.Directory,
		log:              log,
		clock:            clockwork.NewRealClock(),
		progressInterval: DefaultProgressInterval,
		running:          map[string]bool{},
	}
	if e.dir == "" {
		if stateDir == "" {
			return nil, errors.New("backup.directory: is required when the agent has no state directory")
		}
		e.dir = filepath.Join(stateDir, "backups")
	}
	if err := os.MkdirAll(e.dir, 0o700); err != nil {
		return nil, fmt.Errorf("backup.directory: %w", err)
	}
	if info, err := os.Stat(e.dir); err == nil && info.Mode().Perm()&0o077 != 0 {
		// Archives hold every row of the databases; say so, but leave an
		// administrator's deliberate choice (e.g. a backup group) alone.
		log.Warn("the backup directory is accessible to group or others; archives are created 0600",
			zap.String("directory", e.dir), zap.Stringer("mode", info.Mode().Perm()))
	}
	removeStale(e.dir, log)
	if len(cfg.Databases) == 0 {
		return e, nil
	}
	var err error
	if e.pgDump, err = resolveBinary(cfg.PgDump, "pg_dump", postgresLibDir); err != nil {
		return nil, err
	}
	if e.pgRestore, err = resolveBinary(cfg.PgRestore, "pg_restore", postgresLibDir); err != nil {
		return nil, err
	}
	return e, nil
}

// Directory is where archives and manifests are written.
func (e *Executor) Directory() string { return e.dir }

// PgRestore is the pg_restore binary the executor verifies archives with.
func (e *Executor) PgRestore() string { return e.pgRestore }

// Validate accepts backup commands for databases in backup.databases.
func (e *Executor) Validate(spec *flotillav1.CommandSpec) error {
	b := spec.GetBackup()
	if b == nil {
		return executor.Reject("the backup executor runs only backup commands, not %s", command.KindText(spec))
	}
	name := b.GetDatabase()
	if name == "" {
		return executor.Reject("backup.database is required")
	}
	// Checked before the lookup so that the reason never echoes a long or
	// hostile string: validate quotes and cuts what it refuses.
	if err := validate.DatabaseName(name); err != nil {
		return executor.Reject("backup.database: %v", err)
	}
	if _, ok := e.cfg.Databases[name]; !ok {
		return executor.Reject("database %s is not in backup.databases", name)
	}
	return nil
}

// Execute backs up the database the command names and returns a
// BackupResult. On any failure, cancellation included, the partial archive
// is removed: no file ever has a final name unless it was verified.
func (e *Executor) Execute(ctx context.Context, spec *flotillav1.CommandSpec, progress executor.Progress) (*flotillav1.CommandResult, error) {
	if err := e.Validate(spec); err != nil {
		return nil, err
	}
	name := spec.GetBackup().GetDatabase()
	if !e.acquire(name) {
		return nil, executor.Reject("a backup of database %s is already running on this host", name)
	}
	defer e.release(name)
	progress = progress.OrDiscard()
	res, err := e.backup(ctx, name, progress)
	if err != nil {
		e.log.Warn("backup failed", zap.String("database", name), zap.Error(err))
		return nil, err
	}
	return &flotillav1.CommandResult{Kind: &flotillav1.CommandResult_Backup{Backup: res}}, nil
}

func (e *Executor) acquire(name string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.running[name] {
		return false
	}
	e.running[name] = true
	return true
}

func (e *Executor) release(name string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.running, name)
}

// backup dumps, verifies, commits and describes one archive of name.
func (e *Executor) backup(ctx context.Context, name string, progress executor.Progress) (*flotillav1.BackupResult, error) {
	started := e.clock.Now().UTC()
	db := e.cfg.Databases[name].withDefaults(name)
	fail := func(format string, args ...any) error {
		return fmt.Errorf("backup of database %s: "+format, append([]any{name}, args...)...)
	}
	if err := ctx.Err(); err != nil {
		return nil, fail("not started: %w", err)
	}
	password := ""
	if db.PasswordFile != "" {
		var err error
		if password, err = readPassword(db.PasswordFile); err != nil {
			return nil, fail("backup.databases.%s.password_file: %w", name, err)
		}
	}
	pgDumpVersion, err := programVersion(ctx, e.pgDump)
	if err != nil {
		return nil, fail("%w", err)
	}
	r, err := reserve(e.dir, name, started)
	if err != nil {
		return nil, fail("%w", err)
	}
	e.log.Info("backup started", zap.String("database", name), zap.String("dbname", db.DBName),
		zap.String("host", db.Host), zap.Int("port", db.Port), zap.String("file", r.partial))

	m, err := e.dumpAndVerify(ctx, name, db, password, r, progress)
	if err != nil {
		if rmErr := r.discard(); rmErr != nil {
			return nil, fail("%w; removing the partial archive %s also failed: %v", err, r.partial, rmErr)
		}
		return nil, fail("%w; the partial archive was removed", err)
	}
	m.Database, m.DBName, m.StartedAt, m.PgDumpVersion = name, db.DBName, started, pgDumpVersion
	elapsed, err := e.commit(r, &m, started)
	if err != nil {
		return nil, fail("%w", err)
	}
	e.log.Info("backup finished", zap.String("database", name), zap.String("file", r.archive),
		zap.Uint64("size_bytes", m.SizeBytes), zap.String("sha256", m.SHA256),
		zap.Int("entries", m.Entries), zap.String("duration", m.Duration))
	return &flotillav1.BackupResult{
		Database:        name,
		Path:            r.archive,
		ManifestPath:    r.manifest,
		SizeBytes:       m.SizeBytes,
		Sha256:          m.SHA256,
		StartedAt:       timestamppb.New(started),
		Duration:        durationpb.New(elapsed),
		PgDumpVersion:   pgDumpVersion,
		ServerVersion:   m.ServerVersion,
		VerifiedEntries: uint32(m.Entries),
	}, nil
}

// dumpAndVerify streams pg_dump into the reserved partial file, closes it
// and verifies it. The returned manifest has the archive's fields filled.
func (e *Executor) dumpAndVerify(ctx context.Context, name string, db Database, password string, r *reservation, progress executor.Progress) (Manifest, error) {
	out, err := e.dump(ctx, db, password, r.file, func(n uint64) {
		progress(&flotillav1.CommandProgress{Message: "dumping database " + name, Current: n})
	})
	if cerr := r.file.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close the archive: %w", cerr)
	}
	if err != nil {
		return Manifest{}, err
	}
	if out.warnings != "" {
		e.log.Warn("pg_dump succeeded with warnings", zap.String("database", name), zap.String("stderr", out.warnings))
	}
	progress(&flotillav1.CommandProgress{Message: "verifying the archive of " + name, Current: out.size, Total: out.size})
	entries, serverVersion, err := VerifyArchive(ctx, e.pgRestore, r.partial)
	if err != nil {
		return Manifest{}, err
	}
	// A cancel that arrived after pg_restore finished still wins: the
	// command was cancelled, so it must not leave a finished backup.
	if err := ctx.Err(); err != nil {
		return Manifest{}, fmt.Errorf("stopped after verification: %w", err)
	}
	return Manifest{
		Version:       ManifestVersion,
		File:          filepath.Base(r.archive),
		Format:        "custom",
		SizeBytes:     out.size,
		SHA256:        out.sha256,
		ServerVersion: serverVersion,
		Entries:       entries,
	}, nil
}

// commit gives the verified archive its final name and writes its
// manifest; if the manifest cannot be written the archive is removed. It
// returns the backup's duration, as the manifest records it.
func (e *Executor) commit(r *reservation, m *Manifest, started time.Time) (time.Duration, error) {
	if err := r.commit(); err != nil {
		if rmErr := r.discard(); rmErr != nil {
			return 0, fmt.Errorf("%w; removing the partial archive %s also failed: %v", err, r.partial, rmErr)
		}
		return 0, fmt.Errorf("%w; the partial archive was removed", err)
	}
	elapsed := e.clock.Since(started)
	m.Duration, m.DurationSeconds = elapsed.Round(time.Millisecond).String(), elapsed.Seconds()
	if err := writeManifest(r.manifest, *m); err != nil {
		if rmErr := r.uncommit(); rmErr != nil {
			return 0, fmt.Errorf("%w; removing the archive %s also failed: %v", err, r.archive, rmErr)
		}
		return 0, fmt.Errorf("%w; the archive was removed", err)
	}
	return elapsed, nil
}
