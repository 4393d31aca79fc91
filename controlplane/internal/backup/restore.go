package backup

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"flotilla.dev/controlplane/internal/datadir"
	"flotilla.dev/controlplane/internal/fsutil"
	"flotilla.dev/controlplane/internal/store/sqlite"
)

// maxManifestSize bounds the manifest read into memory.
const maxManifestSize = 1 << 20

// RestoreConfig says which archive goes where.
type RestoreConfig struct {
	// From is the archive.
	From string
	// DataDir receives the files (created 0700).
	DataDir string
	// StorePath receives the SQLite store; DataDir/flotilla.db when empty.
	StorePath string
	// Force restores into a data directory that is not empty, replacing
	// what the archive holds.
	Force bool
}

// staged is a verified member in a temporary file, waiting to be renamed
// to dest.
type staged struct {
	tmp, dest string
}

// Restore verifies the archive and puts it into the data directory: every
// member is checked against the manifest's size and SHA-256 in a temporary
// file next to its destination, the store's integrity and schema version
// are checked, and only then is anything renamed into place, with mode
// 0600 in a 0700 directory. It refuses a data directory that is not empty
// (naming what is there) unless Force, one that a running control plane
// holds, and an archive whose schema is newer than this binary.
func Restore(ctx context.Context, cfg RestoreConfig) (_ Manifest, err error) {
	if cfg.From == "" {
		return Manifest{}, errors.New("restore: --from: required")
	}
	if cfg.DataDir == "" {
		return Manifest{}, errors.New("restore: --data-dir: required")
	}
	if cfg.StorePath == "" {
		cfg.StorePath = filepath.Join(cfg.DataDir, StoreFile)
	}
	f, err := os.Open(cfg.From)
	if err != nil {
		return Manifest{}, fmt.Errorf("restore: --from: %w", err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return Manifest{}, fmt.Errorf("restore: %s is not a control-plane backup: %w", cfg.From, err)
	}
	tr := tar.NewReader(zr)
	m, err := readManifest(tr, cfg.From)
	if err != nil {
		return Manifest{}, err
	}
	if err := checkSchema(m); err != nil {
		return Manifest{}, err
	}
	lock, err := prepareDataDir(cfg)
	if err != nil {
		return Manifest{}, err
	}
	defer lock.Release()
	var files []staged
	defer func() {
		for _, s := range files {
			os.Remove(s.tmp) // gone already once renamed
		}
	}()
	if files, err = extract(ctx, tr, m, cfg); err != nil {
		return Manifest{}, err
	}
	return m, commit(files, cfg)
}

func readManifest(tr *tar.Reader, from string) (Manifest, error) {
	hdr, err := tr.Next()
	if err != nil || hdr.Name != ManifestName {
		return Manifest{}, fmt.Errorf("restore: %s is not a control-plane backup: its first member is not %s", from, ManifestName)
	}
	b, err := io.ReadAll(io.LimitReader(tr, maxManifestSize))
	if err != nil {
		return Manifest{}, fmt.Errorf("restore: %s: %w", from, err)
	}
	m, err := parseManifest(b)
	if err != nil {
		return Manifest{}, fmt.Errorf("restore: %s: %w", from, err)
	}
	return m, nil
}

func checkSchema(m Manifest) error {
	if m.StoreDriver != "sqlite" {
		return nil
	}
	latest, err := sqlite.LatestSchemaVersion()
	if err != nil {
		return err
	}
	if m.SchemaVersion > latest {
		return fmt.Errorf("restore: the archive's store is at schema version %d, this binary knows up to %d (written by control plane %s); restore with that version or a newer one",
			m.SchemaVersion, latest, m.ControlPlaneVersion)
	}
	return nil
}

// prepareDataDir creates the data directory 0700, refuses one that holds
// anything unless Force, and takes its lock so that no control plane
// starts on it, or runs on it, while files are replaced.
func prepareDataDir(cfg RestoreConfig) (*datadir.Lock, error) {
	if !cfg.Force {
		if err := refuseNonEmpty(cfg.DataDir, cfg.StorePath); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("restore: --data-dir: %w", err)
	}
	if err := os.Chmod(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("restore: --data-dir: %w", err)
	}
	lock, err := datadir.Acquire(cfg.DataDir, time.Now())
	if err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	return lock, nil
}

func refuseNonEmpty(dir, storePath string) error {
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("restore: --data-dir: %w", err)
	}
	if len(entries) > 0 {
		names := make([]string, 0, len(entries))
		for _, e := range entries {
			names = append(names, e.Name())
		}
		if len(names) > 8 {
			names = append(names[:8], fmt.Sprintf("and %d more", len(entries)-8))
		}
		return fmt.Errorf("restore: --data-dir: %s is not empty (it holds %s); restore into an empty directory, or pass --force to replace the files the archive holds",
			dir, strings.Join(names, ", "))
	}
	if _, err := os.Stat(storePath); err == nil {
		return fmt.Errorf("restore: store.path: %s exists; pass --force to replace it", storePath)
	}
	return nil
}

// extract writes every member to a temporary file next to its destination
// and checks it against the manifest; the store is checked for integrity
// and its schema version too.
func extract(ctx context.Context, tr *tar.Reader, m Manifest, cfg RestoreConfig) ([]staged, error) {
	var files []staged
	seen := map[string]bool{}
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return files, fmt.Errorf("restore: %s: %w", cfg.From, err)
		}
		want, ok := m.file(hdr.Name)
		if !ok || seen[hdr.Name] || hdr.Typeflag != tar.TypeReg {
			return files, fmt.Errorf("restore: %s: member %q is not a file of the manifest or appears twice", cfg.From, hdr.Name)
		}
		seen[hdr.Name] = true
		dest := filepath.Join(cfg.DataDir, hdr.Name)
		if hdr.Name == StoreFile {
			dest = cfg.StorePath
		}
		tmp, err := writeVerified(tr, dest, want)
		if err != nil {
			return files, err
		}
		files = append(files, staged{tmp: tmp, dest: dest})
	}
	if len(files) != len(m.Files) {
		return files, fmt.Errorf("restore: %s is truncated: %d of the manifest's %d files are in it", cfg.From, len(files), len(m.Files))
	}
	for _, s := range files {
		if s.dest == cfg.StorePath {
			return files, checkStore(ctx, s.tmp, m)
		}
	}
	return files, nil
}

// writeVerified copies one member into a temporary 0600 file in dest's
// directory, synced, and checks its size and SHA-256.
func writeVerified(r io.Reader, dest string, want File) (_ string, err error) {
	tmp, err := os.CreateTemp(filepath.Dir(dest), "."+filepath.Base(dest)+".restore-*")
	if err != nil {
		return "", fmt.Errorf("restore: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(0o600); err != nil {
		return "", fmt.Errorf("restore: %w", err)
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), io.LimitReader(r, want.Size+1))
	if err != nil {
		return "", fmt.Errorf("restore: %s: %w", want.Name, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); n != want.Size || got != want.SHA256 {
		return "", fmt.Errorf("restore: %s: %d bytes with SHA-256 %s, the manifest says %d bytes with %s; the archive is damaged",
			want.Name, n, got, want.Size, want.SHA256)
	}
	if err := tmp.Sync(); err != nil {
		return "", fmt.Errorf("restore: %w", err)
	}
	return tmp.Name(), tmp.Close()
}

func checkStore(ctx context.Context, path string, m Manifest) error {
	if err := sqlite.CheckIntegrity(ctx, path); err != nil {
		return fmt.Errorf("restore: %s: %w", StoreFile, err)
	}
	v, err := sqlite.SchemaVersionOf(ctx, path)
	if err != nil {
		return fmt.Errorf("restore: %s: %w", StoreFile, err)
	}
	if v != m.SchemaVersion {
		return fmt.Errorf("restore: %s is at schema version %d, the manifest says %d", StoreFile, v, m.SchemaVersion)
	}
	return nil
}

// commit renames the verified files into place. An old store's -wal and
// -shm files go first: SQLite would apply an old WAL to the restored file.
func commit(files []staged, cfg RestoreConfig) error {
	for _, s := range files {
		if s.dest != cfg.StorePath {
			continue
		}
		for _, suffix := range []string{"-wal", "-shm"} {
			if err := os.Remove(cfg.StorePath + suffix); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("restore: %w", err)
			}
		}
	}
	dirs := map[string]bool{}
	for _, s := range files {
		if err := os.Rename(s.tmp, s.dest); err != nil {
			return fmt.Errorf("restore: %w", err)
		}
		dirs[filepath.Dir(s.dest)] = true
	}
	for d := range dirs {
		if err := fsutil.SyncDir(d); err != nil {
			return fmt.Errorf("restore: %w", err)
		}
	}
	return nil
}
