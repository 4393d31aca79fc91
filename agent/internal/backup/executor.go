package backup

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	"go.uber.org/zap"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"flotilla.dev/agent/internal/backup/objstore"
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
	stateDir  string
	pgDump    string
	pgRestore string
	log       *zap.Logger

	// Tests replace these before the first command.
	clock            clockwork.Clock
	progressInterval time.Duration
	tempDir          string // parent of temporary passfiles; "" = os.TempDir()

	// agentBinary and configPath make restored servers' restore_command.
	agentBinary string
	configPath  string

	mu      sync.Mutex
	running map[string]bool // databases being backed up

	waker            archiveWaker // servers whose archive_timeout was woken
	walChecks        walChecker   // the WAL archives' last continuity checks
	walCheckInterval time.Duration
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
		stateDir:         stateDir,
		dir:              cfg.Directory,
		log:              log,
		clock:            clockwork.NewRealClock(),
		progressInterval: DefaultProgressInterval,
		walCheckInterval: DefaultWALCheckInterval,
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
	if l, err := objstore.NewLocal(e.dir); err == nil {
		// Uploads into the local directory that a killed agent left; an
		// hour old, so that a wal-push in progress is not one of them.
		removed, _ := l.RemoveTemp(time.Hour)
		for _, f := range removed {
			log.Info("removed a temporary file left by an interrupted store", zap.String("file", f))
		}
	}
	if len(cfg.Databases) == 0 {
		return e, nil
	}
	e.cleanScratch()
	var err error
	if e.pgDump, err = resolveBinary(cfg.PgDump, "pg_dump", postgresLibDir); err != nil {
		return nil, err
	}
	if e.pgRestore, err = resolveBinary(cfg.PgRestore, "pg_restore", postgresLibDir); err != nil {
		return nil, err
	}
	return e, nil
}

// SetWALFetch tells the executor how restored servers fetch archived WAL:
// the flotilla-agent binary at agentBinary, run with the configuration
// file configPath (its restore_command is "agentBinary wal-fetch -config
// configPath -database <name> %f %p"). Without it point-in-time restores
// are refused. Call it before the first command.
func (e *Executor) SetWALFetch(agentBinary, configPath string) {
	e.agentBinary, e.configPath = agentBinary, configPath
}

// Directory is where archives and manifests are written.
func (e *Executor) Directory() string { return e.dir }

// PgRestore is the pg_restore binary the executor verifies archives with.
func (e *Executor) PgRestore() string { return e.pgRestore }

// Validate accepts the backup kinds (backup, base_backup, prune, restore,
// drill) for databases in backup.databases, with well-formed parameters.
func (e *Executor) Validate(spec *flotillav1.CommandSpec) error {
	kind := command.Kind(spec)
	database, dest, err := kindTarget(spec)
	if err != nil {
		return err
	}
	if database == "" {
		return executor.Reject("%s.database is required", kind)
	}
	// Checked before the lookup so that the reason never echoes a long or
	// hostile string: validate quotes and cuts what it refuses.
	if err := validate.DatabaseName(database); err != nil {
		return executor.Reject("%s.database: %v", kind, err)
	}
	if _, ok := e.cfg.Databases[database]; !ok {
		return executor.Reject("database %s is not in backup.databases", database)
	}
	if err := objstore.CheckSpec(kind+".destination", dest); err != nil {
		return executor.Reject("%v", err)
	}
	switch k := spec.GetKind().(type) {
	case *flotillav1.CommandSpec_Prune:
		return validateRetention(k.Prune.GetRetention())
	case *flotillav1.CommandSpec_Restore:
		return validateRestore(k.Restore)
	case *flotillav1.CommandSpec_Drill:
		return checkBackupName("drill.backup", k.Drill.GetBackup())
	}
	return nil
}

// kindTarget returns the database and destination of a backup kind, or
// rejects another kind.
func kindTarget(spec *flotillav1.CommandSpec) (string, *flotillav1.BackupDestination, error) {
	switch k := spec.GetKind().(type) {
	case *flotillav1.CommandSpec_Backup:
		return k.Backup.GetDatabase(), k.Backup.GetDestination(), nil
	case *flotillav1.CommandSpec_BaseBackup:
		return k.BaseBackup.GetDatabase(), k.BaseBackup.GetDestination(), nil
	case *flotillav1.CommandSpec_Prune:
		return k.Prune.GetDatabase(), k.Prune.GetDestination(), nil
	case *flotillav1.CommandSpec_Restore:
		return k.Restore.GetDatabase(), k.Restore.GetDestination(), nil
	case *flotillav1.CommandSpec_Drill:
		return k.Drill.GetDatabase(), k.Drill.GetDestination(), nil
	}
	return "", nil, executor.Reject("the backup executor runs only backup, base_backup, prune, restore and drill commands, not %s",
		command.KindText(spec))
}

// Execute runs a backup kind. Two commands of the same kind for the same
// database never run at once on this host.
func (e *Executor) Execute(ctx context.Context, spec *flotillav1.CommandSpec, progress executor.Progress) (*flotillav1.CommandResult, error) {
	if err := e.Validate(spec); err != nil {
		return nil, err
	}
	kind := command.Kind(spec)
	name, dest, _ := kindTarget(spec)
	if !e.acquire(kind + ":" + name) {
		return nil, executor.Reject("a %s of database %s is already running on this host", kind, name)
	}
	defer e.release(kind + ":" + name)
	progress = progress.OrDiscard()
	store, err := e.open(dest)
	if err != nil {
		return nil, fmt.Errorf("%s of database %s: destination: %w", kind, name, err)
	}
	res, err := e.run(ctx, spec, name, store, progress)
	if err != nil {
		e.log.Warn(kind+" failed", zap.String("database", name), zap.Error(err))
	}
	return res, err
}

// run executes a validated command of a backup kind.
func (e *Executor) run(ctx context.Context, spec *flotillav1.CommandSpec, name string, store objstore.Store, progress executor.Progress) (*flotillav1.CommandResult, error) {
	switch k := spec.GetKind().(type) {
	case *flotillav1.CommandSpec_Backup:
		res, err := e.backup(ctx, name, store, progress)
		if err != nil {
			return nil, err
		}
		return &flotillav1.CommandResult{Kind: &flotillav1.CommandResult_Backup{Backup: res}}, nil
	case *flotillav1.CommandSpec_BaseBackup:
		res, err := e.baseBackup(ctx, name, store, progress)
		if err != nil {
			return nil, err
		}
		return &flotillav1.CommandResult{Kind: &flotillav1.CommandResult_Backup{Backup: res}}, nil
	case *flotillav1.CommandSpec_Prune:
		res, err := e.prune(ctx, name, store, k.Prune, progress)
		if err != nil {
			return nil, err
		}
		return &flotillav1.CommandResult{Kind: &flotillav1.CommandResult_Prune{Prune: res}}, nil
	case *flotillav1.CommandSpec_Restore:
		res, err := e.restore(ctx, name, store, k.Restore, progress)
		if err != nil {
			return nil, err
		}
		return &flotillav1.CommandResult{Kind: &flotillav1.CommandResult_Restore{Restore: res}}, nil
	case *flotillav1.CommandSpec_Drill:
		res, err := e.drill(ctx, name, store, k.Drill.GetBackup(), progress)
		var out *flotillav1.CommandResult
		if res != nil {
			out = &flotillav1.CommandResult{Kind: &flotillav1.CommandResult_Drill{Drill: res}}
		}
		return out, err
	}
	return nil, executor.Reject("the backup executor cannot run %s", command.KindText(spec))
}

// open returns the destination a command names.
func (e *Executor) open(dest *flotillav1.BackupDestination) (objstore.Store, error) {
	return objstore.FromSpec(dest, e.cfg.S3, e.dir)
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

// backup dumps, verifies, stores and describes one archive of name.
func (e *Executor) backup(ctx context.Context, name string, store objstore.Store, progress executor.Progress) (*flotillav1.BackupResult, error) {
	started := e.clock.Now().UTC()
	db := e.cfg.Databases[name].withDefaults(name)
	fail := func(format string, args ...any) error {
		// The working file is in the backup directory: a full one is named.
		return objstore.Full(fmt.Errorf("backup of database %s: "+format, append([]any{name}, args...)...), "the backup directory "+e.dir)
	}
	if err := ctx.Err(); err != nil {
		return nil, fail("not started: %w", err)
	}
	password, err := db.password()
	if err != nil {
		return nil, fail("backup.databases.%s.password_file: %w", name, err)
	}
	pgDumpVersion, err := programVersion(ctx, e.pgDump)
	if err != nil {
		return nil, fail("%w", err)
	}
	r, err := reserve(e.dir, name, started, e.takenIn(ctx, store))
	if err != nil {
		return nil, fail("%w", err)
	}
	e.log.Info("backup started", zap.String("database", name), zap.String("dbname", db.DBName),
		zap.String("host", db.Host), zap.Int("port", db.Port), zap.String("file", r.partial),
		zap.String("destination", store.URI("")))

	m, err := e.dumpArchive(ctx, name, db, password, r, progress)
	if err != nil {
		if rmErr := r.discard(); rmErr != nil {
			return nil, fail("%w; removing the partial archive %s also failed: %v", err, r.partial, rmErr)
		}
		return nil, fail("%w; the partial archive was removed", err)
	}
	m.Database, m.DBName, m.StartedAt, m.PgDumpVersion = name, db.DBName, started, pgDumpVersion
	verify := func() error {
		var err error
		m.Entries, m.ServerVersion, err = VerifyArchive(ctx, e.pgRestore, r.partial)
		return err
	}
	st, err := e.store(ctx, store, r, &m, started, verify)
	if err != nil {
		if rmErr := r.discard(); rmErr != nil {
			return nil, fail("%w; removing the partial archive %s also failed: %v", err, r.partial, rmErr)
		}
		return nil, fail("%w; the partial archive was removed", err)
	}
	e.log.Info("backup finished", zap.String("database", name), zap.String("uri", st.uri),
		zap.Uint64("size_bytes", m.SizeBytes), zap.String("sha256", m.SHA256),
		zap.Int("entries", m.Entries), zap.Int("tables", len(m.Tables)), zap.String("duration", m.Duration))
	return &flotillav1.BackupResult{
		Database:        name,
		Path:            st.path,
		ManifestPath:    st.manifestPath,
		SizeBytes:       m.SizeBytes,
		Sha256:          m.SHA256,
		StartedAt:       timestamppb.New(started),
		Duration:        durationpb.New(st.elapsed),
		PgDumpVersion:   pgDumpVersion,
		ServerVersion:   m.ServerVersion,
		VerifiedEntries: uint32(m.Entries),
		Name:            m.Name,
		Type:            flotillav1.BackupType_BACKUP_TYPE_DUMP,
		DestinationUri:  st.uri,
		Verified:        true,
		FinishedAt:      timestamppb.New(m.FinishedAt),
		UploadDuration:  durationpb.New(st.upload),
	}, nil
}

// dumpArchive streams pg_dump into the reserved partial file and closes
// it; meanwhile it counts and checksums every table in the dump's
// snapshot. The returned manifest has the archive's fields filled but for
// what verification finds (entries, server version).
func (e *Executor) dumpArchive(ctx context.Context, name string, db Database, password string, r *reservation, progress executor.Progress) (Manifest, error) {
	snap, err := openSnapshot(ctx, db, password)
	if err != nil {
		if db.PasswordFile != "" {
			err = fmt.Errorf("%w (the password is read from %s)", err, db.PasswordFile)
		}
		return Manifest{}, err
	}
	defer snap.close(ctx)
	type statsResult struct {
		tables []TableStat
		err    error
	}
	statsDone := make(chan statsResult, 1)
	go func() {
		tables, err := tableStats(ctx, snap.conn)
		statsDone <- statsResult{tables, err}
	}()
	out, err := e.dump(ctx, db, password, snap.id, r.file, func(n uint64) {
		progress(&flotillav1.CommandProgress{Message: "dumping database " + name, Current: n})
	})
	stats := <-statsDone
	if cerr := r.file.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close the archive: %w", cerr)
	}
	if err == nil && stats.err != nil {
		err = fmt.Errorf("table statistics: %w", stats.err)
	}
	if err != nil {
		return Manifest{}, err
	}
	if out.warnings != "" {
		e.log.Warn("pg_dump succeeded with warnings", zap.String("database", name), zap.String("stderr", out.warnings))
	}
	progress(&flotillav1.CommandProgress{Message: "verifying and storing the archive of " + name, Current: out.size, Total: out.size})
	return Manifest{
		Version:   ManifestVersion,
		Type:      TypeDump,
		Name:      strings.TrimSuffix(filepath.Base(r.archive), archiveSuffix),
		File:      filepath.Base(r.archive),
		Format:    "custom",
		SizeBytes: out.size,
		SHA256:    out.sha256,
		Tables:    stats.tables,
	}, nil
}

// stored says where a verified archive went.
type stored struct {
	uri, path, manifestPath string
	elapsed, upload         time.Duration
}

// store verifies the archive (verify: pg_restore reads it through) and
// puts it and then its manifest into the destination, reading each back.
// In the local backup directory the archive is verified and then renamed
// in place; elsewhere the upload runs while it is verified, and the local
// file is removed. The manifest goes last, and only once both succeeded:
// an archive without one is not catalogued, so an interrupted or failed
// store never counts as a backup.
func (e *Executor) store(ctx context.Context, store objstore.Store, r *reservation, m *Manifest, started time.Time, verify func() error) (stored, error) {
	if l, ok := store.(*objstore.Local); ok && l.Root() == e.dir {
		if err := e.verified(ctx, verify); err != nil {
			return stored{}, err
		}
		uploadStart := e.clock.Now()
		elapsed, err := e.commit(r, m, started)
		if err != nil {
			return stored{}, err
		}
		// The read-back: the file under its final name is what was hashed.
		if err := objstore.Verify(ctx, l, m.File, objstore.Digest{Size: int64(m.SizeBytes), SHA256: m.SHA256}); err != nil {
			rmErr := errors.Join(os.Remove(r.manifest), r.uncommit())
			if rmErr != nil {
				return stored{}, fmt.Errorf("%w; removing the archive and its manifest also failed: %v", err, rmErr)
			}
			return stored{}, fmt.Errorf("%w; the archive and its manifest were removed", err)
		}
		return stored{uri: l.URI(m.File), path: r.archive, manifestPath: r.manifest, elapsed: elapsed, upload: e.clock.Since(uploadStart)}, nil
	}
	uploadStart := e.clock.Now()
	verified := make(chan error, 1)
	go func() { verified <- e.verified(ctx, verify) }()
	want := objstore.Digest{Size: int64(m.SizeBytes), SHA256: m.SHA256}
	putErr := objstore.PutFile(ctx, store, m.File, r.partial, want, false)
	upload := e.clock.Since(uploadStart)
	if err := errors.Join(<-verified, putErr); err != nil {
		if putErr == nil {
			if derr := store.Delete(context.WithoutCancel(ctx), m.File); derr != nil {
				return stored{}, fmt.Errorf("%w; deleting the uploaded archive also failed: %v", err, derr)
			}
			return stored{}, fmt.Errorf("%w; the uploaded archive was deleted", err)
		}
		return stored{}, err
	}
	elapsed := e.clock.Since(started)
	m.Duration, m.DurationSeconds = elapsed.Round(time.Millisecond).String(), elapsed.Seconds()
	m.FinishedAt = e.clock.Now().UTC()
	m.URI = store.URI(m.File)
	if err := putManifest(ctx, store, manifestKey(m.Name), *m); err != nil {
		if derr := store.Delete(context.WithoutCancel(ctx), m.File); derr != nil {
			return stored{}, fmt.Errorf("%w; deleting the uploaded archive also failed: %v", err, derr)
		}
		return stored{}, fmt.Errorf("%w; the uploaded archive was deleted", err)
	}
	_ = r.discard()
	return stored{uri: m.URI, elapsed: elapsed, upload: upload}, nil
}

// takenIn reports the backup names already used in store, or nil for the
// local backup directory (reserve checks its files itself).
func (e *Executor) takenIn(ctx context.Context, store objstore.Store) func(string) bool {
	if l, ok := store.(*objstore.Local); ok && l.Root() == e.dir {
		return nil
	}
	return func(name string) bool {
		for _, key := range []string{name + archiveSuffix, manifestKey(name)} {
			// An error other than "not found" is left to the upload, which
			// refuses an existing key and names the destination's fault.
			if _, err := store.Stat(ctx, key); err == nil {
				return true
			}
		}
		return false
	}
}

// verified runs verify; a cancel that arrived after it finished still
// wins: the command was cancelled, so it must not leave a finished backup.
func (e *Executor) verified(ctx context.Context, verify func() error) error {
	if err := verify(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("stopped after verification: %w", err)
	}
	return nil
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
	m.FinishedAt = e.clock.Now().UTC()
	m.URI = fileURI(r.archive)
	if err := writeManifest(r.manifest, *m); err != nil {
		if rmErr := r.uncommit(); rmErr != nil {
			return 0, fmt.Errorf("%w; removing the archive %s also failed: %v", err, r.archive, rmErr)
		}
		return 0, fmt.Errorf("%w; the archive was removed", err)
	}
	return elapsed, nil
}
