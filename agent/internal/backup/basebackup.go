package backup

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"go.uber.org/zap"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"flotilla.dev/agent/internal/backup/objstore"
	"flotilla.dev/agent/internal/executor"
	flotillav1 "flotilla.dev/gen/flotilla/v1"
)

// baseSuffix ends the object key of a base backup's archive: the cluster's
// files as pg_basebackup writes them in tar format, gzip-compressed, with
// the WAL needed to make them consistent.
const baseSuffix = ".base.tar.gz"

// baseBackup runs pg_basebackup into a private working directory, reads
// the archive through (every entry, so that a truncated archive fails
// here), stores it and then its manifest.
func (e *Executor) baseBackup(ctx context.Context, name string, store objstore.Store, progress executor.Progress) (*flotillav1.BackupResult, error) {
	started := e.clock.Now().UTC()
	db := e.cfg.Databases[name].withDefaults(name)
	fail := func(format string, args ...any) error {
		// The working directory is in the backup directory: a full one is named.
		return objstore.Full(fmt.Errorf("base backup of database %s: "+format, append([]any{name}, args...)...), "the backup directory "+e.dir)
	}
	password, err := db.password()
	if err != nil {
		return nil, fail("backup.databases.%s.password_file: %w", name, err)
	}
	bin, err := e.pgBinary("pg_basebackup")
	if err != nil {
		return nil, fail("%w", err)
	}
	work, err := os.MkdirTemp(e.dir, ".basebackup-")
	if err != nil {
		return nil, fail("working directory: %w", err)
	}
	defer os.RemoveAll(work)
	out := filepath.Join(work, "out")
	progress(&flotillav1.CommandProgress{Message: "pg_basebackup of the cluster of " + name})
	if _, err := e.runPG(ctx, pgRun{bin: bin, db: db, password: password, args: []string{
		"--dbname=" + db.conninfo(), "--pgdata=" + out, "--format=tar", "--gzip", "--wal-method=fetch",
		"--checkpoint=fast", "--no-password", "--label=flotilla " + name,
	}}); err != nil {
		return nil, fail("%w", err)
	}
	archive := filepath.Join(out, "base.tar.gz")
	if entries, _ := os.ReadDir(out); len(entries) > 2 {
		return nil, fail("the cluster has tablespaces outside its data directory, which base backups do not support yet")
	}
	label, err := readBaseArchive(archive)
	if err != nil {
		return nil, fail("verify %s: %w", archive, err)
	}
	digest, err := objstore.DigestFile(archive)
	if err != nil {
		return nil, fail("%w", err)
	}
	version, _ := programVersion(ctx, bin)
	base := fmt.Sprintf("%s-%s", name, started.Format(timeLayout))
	m := Manifest{Version: ManifestVersion, Type: TypeBase, Database: name, DBName: db.DBName, Name: base,
		File: base + baseSuffix, Format: "tar.gz", SizeBytes: uint64(digest.Size), SHA256: digest.SHA256,
		StartedAt: started, PgDumpVersion: version, StartWAL: label.startWAL, Timeline: label.timeline}
	progress(&flotillav1.CommandProgress{Message: "storing the base backup of " + name, Current: m.SizeBytes, Total: m.SizeBytes})
	uploadStart := e.clock.Now()
	if err := objstore.PutFile(ctx, store, m.File, archive, digest, false); err != nil {
		return nil, fail("%w", err)
	}
	upload := e.clock.Since(uploadStart)
	elapsed := e.clock.Since(started)
	m.Duration, m.DurationSeconds, m.FinishedAt, m.URI = elapsed.Round(1e6).String(), elapsed.Seconds(), e.clock.Now().UTC(), store.URI(m.File)
	if err := putManifest(ctx, store, manifestKey(m.Name), m); err != nil {
		_ = store.Delete(context.WithoutCancel(ctx), m.File)
		return nil, fail("%w; the archive was deleted", err)
	}
	e.log.Info("base backup finished", zap.String("database", name), zap.String("uri", m.URI),
		zap.Uint64("size_bytes", m.SizeBytes), zap.String("start_wal", m.StartWAL))
	res := &flotillav1.BackupResult{Database: name, SizeBytes: m.SizeBytes, Sha256: m.SHA256, StartedAt: timestamppb.New(started),
		Duration: durationpb.New(elapsed), PgDumpVersion: version, Name: m.Name, Type: flotillav1.BackupType_BACKUP_TYPE_BASE,
		DestinationUri: m.URI, Verified: true, FinishedAt: timestamppb.New(m.FinishedAt), UploadDuration: durationpb.New(upload),
		StartWal: m.StartWAL, Timeline: m.Timeline}
	if l, ok := store.(*objstore.Local); ok {
		res.Path, res.ManifestPath = l.Path(m.File), l.Path(manifestKey(m.Name))
	}
	return res, nil
}

// backupLabel is what a base backup's backup_label says.
type backupLabel struct {
	startWAL string
	timeline uint32
}

// readBaseArchive reads every entry of a gzip tar archive from
// pg_basebackup and returns its backup_label.
func readBaseArchive(path string) (backupLabel, error) {
	f, err := os.Open(path)
	if err != nil {
		return backupLabel{}, err
	}
	defer f.Close()
	var label backupLabel
	err = walkTarGz(f, func(h *tar.Header, r io.Reader) error {
		if h.Name == "backup_label" {
			var err error
			label, err = parseBackupLabel(r)
			return err
		}
		_, err := io.Copy(io.Discard, r)
		return err
	})
	if err != nil {
		return backupLabel{}, err
	}
	if label.startWAL == "" {
		return backupLabel{}, errors.New("the archive has no backup_label")
	}
	return label, nil
}

// walkTarGz calls fn for each entry of a gzip-compressed tar stream.
func walkTarGz(r io.Reader, fn func(*tar.Header, io.Reader) error) error {
	gz, err := gzip.NewReader(bufio.NewReaderSize(r, 1<<20))
	if err != nil {
		return fmt.Errorf("gzip: %w", err)
	}
	defer gz.Close()
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("tar: %w", err)
		}
		if err := fn(h, tr); err != nil {
			return fmt.Errorf("%s: %w", h.Name, err)
		}
	}
}

// parseBackupLabel reads "START WAL LOCATION: 0/2000028 (file
// 000000010000000000000002)" and "START TIMELINE: 1".
func parseBackupLabel(r io.Reader) (backupLabel, error) {
	var l backupLabel
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "START WAL LOCATION:"); ok {
			if _, file, ok := strings.Cut(rest, "(file "); ok {
				l.startWAL = strings.TrimSuffix(strings.TrimSpace(file), ")")
			}
		}
		if rest, ok := strings.CutPrefix(line, "START TIMELINE:"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(rest), 10, 32)
			if err != nil {
				return l, fmt.Errorf("START TIMELINE: %w", err)
			}
			l.timeline = uint32(n)
		}
	}
	if err := CheckWALName(l.startWAL); l.startWAL != "" && err != nil {
		return l, err
	}
	return l, sc.Err()
}
