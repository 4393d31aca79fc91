package backup

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"flotilla.dev/agent/internal/backup/objstore"
)

// ManifestVersion is the version of the manifest's format: 2 added the
// type, name, URI, finish time, table statistics and base-backup fields.
const ManifestVersion = 2

// Backup types as manifests record them.
const (
	TypeDump = "dump"
	TypeBase = "base"
)

// Manifest describes one archive. It is written next to the archive, as
// <database>-<time>.json, only once the archive has been verified: an
// archive without a manifest is not a finished backup.
type Manifest struct {
	Version int `json:"version"`
	// Database is the name in backup.databases; DBName the name on the server.
	Database string `json:"database"`
	DBName   string `json:"dbname"`
	// File is the archive's base name, in the manifest's directory.
	File   string `json:"file"`
	Format string `json:"format"`
	// SizeBytes and SHA256 (hex) are those of the archive file.
	SizeBytes uint64    `json:"size_bytes"`
	SHA256    string    `json:"sha256"`
	StartedAt time.Time `json:"started_at"`
	// Duration is the whole backup, verification included, e.g. "1.52s".
	Duration        string  `json:"duration"`
	DurationSeconds float64 `json:"duration_seconds"`
	PgDumpVersion   string  `json:"pg_dump_version"`
	ServerVersion   string  `json:"server_version"`
	// Entries is the number of table-of-contents entries pg_restore listed.
	Entries int `json:"entries"`

	// Type is TypeDump or TypeBase (empty in version 1: a dump).
	Type string `json:"type,omitempty"`
	// Name is the backup's name in the catalog: File without its suffix.
	Name string `json:"name,omitempty"`
	// URI is where the archive was stored.
	URI string `json:"uri,omitempty"`
	// FinishedAt is when the archive was stored and verified.
	FinishedAt time.Time `json:"finished_at,omitempty"`
	// Tables are the row counts and checksums of every table, read in the
	// dump's own snapshot (dumps only).
	Tables []TableStat `json:"tables,omitempty"`
	// StartWAL and Timeline are where a base backup starts: its restore
	// needs that segment and every later one of the archive.
	StartWAL string `json:"start_wal,omitempty"`
	Timeline uint32 `json:"timeline,omitempty"`
}

// BackupType is the manifest's type, a version-1 manifest being a dump.
func (m Manifest) BackupType() string {
	if m.Type == "" {
		return TypeDump
	}
	return m.Type
}

// manifestKey is the object key of the manifest of the backup called name.
func manifestKey(name string) string { return name + manifestSuffix }

// fileURI is the file:// URI of an absolute path.
func fileURI(path string) string { return (&url.URL{Scheme: "file", Path: path}).String() }

// putManifest stores m under key in store and reads it back.
func putManifest(ctx context.Context, store objstore.Store, key string, m Manifest) error {
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("encode the manifest: %w", err)
	}
	data = append(data, '\n')
	d, _ := objstore.DigestReader(bytes.NewReader(data))
	if err := objstore.PutVerified(ctx, store, key, bytes.NewReader(data), d, false); err != nil {
		return fmt.Errorf("write the manifest: %w", err)
	}
	return nil
}

// maxManifestBytes bounds what is read of a manifest.
const maxManifestBytes = 64 << 20

// catalog lists the backups of database in store: every manifest whose
// name starts with "<database>-" and that names database, newest first.
// A manifest that cannot be read is reported in skipped, not fatal.
func catalog(ctx context.Context, store objstore.Store, database string) (backups []Manifest, skipped []error, err error) {
	objs, err := store.List(ctx, database+"-")
	if err != nil {
		return nil, nil, fmt.Errorf("list %s: %w", store.URI(""), err)
	}
	for _, o := range objs {
		if !strings.HasSuffix(o.Key, manifestSuffix) || strings.Contains(o.Key, "/") {
			continue
		}
		m, err := readStoredManifest(ctx, store, o.Key)
		if err != nil {
			skipped = append(skipped, err)
			continue
		}
		if m.Database != database {
			continue // "app-2-…" when listing "app"
		}
		backups = append(backups, m)
	}
	sort.SliceStable(backups, func(i, j int) bool { return backups[i].StartedAt.After(backups[j].StartedAt) })
	return backups, skipped, nil
}

// readStoredManifest reads and decodes the manifest under key.
func readStoredManifest(ctx context.Context, store objstore.Store, key string) (Manifest, error) {
	var m Manifest
	rc, err := store.Open(ctx, key)
	if err != nil {
		return m, err
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, maxManifestBytes))
	if err != nil {
		return m, fmt.Errorf("read %s: %w", store.URI(key), err)
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return m, fmt.Errorf("decode %s: %w", store.URI(key), err)
	}
	if m.Name == "" {
		m.Name = strings.TrimSuffix(key, manifestSuffix)
	}
	return m, nil
}

// findBackup returns the catalogued backup called name, or the newest of
// type typ when name is empty, accepting only backups for which ok (nil:
// any) holds.
func findBackup(ctx context.Context, store objstore.Store, database, name, typ string, ok func(Manifest) bool) (Manifest, error) {
	backups, _, err := catalog(ctx, store, database)
	if err != nil {
		return Manifest{}, err
	}
	for _, m := range backups {
		if name != "" && m.Name != name {
			continue
		}
		if m.BackupType() != typ {
			if name != "" {
				return Manifest{}, fmt.Errorf("backup %s is a %s, not a %s", name, m.BackupType(), typ)
			}
			continue
		}
		if ok == nil || ok(m) {
			return m, nil
		}
	}
	if name != "" {
		return Manifest{}, fmt.Errorf("backup %s of database %s is not in the catalog of %s", name, database, store.URI(""))
	}
	return Manifest{}, fmt.Errorf("no %s backup of database %s in the catalog of %s", typ, database, store.URI(""))
}

// writeManifest writes m to path atomically: a temporary file in the same
// directory, synced, then renamed over path, then the directory synced. A
// reader sees either no manifest or a complete one.
func writeManifest(path string, m Manifest) error {
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("encode the manifest: %w", err)
	}
	tmp := path + tmpSuffix
	if err := writeFileSync(tmp, append(data, '\n'), 0o600); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write the manifest: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write the manifest: %w", err)
	}
	return syncDir(filepath.Dir(path))
}

// ReadManifest reads a manifest written by a backup.
func ReadManifest(path string) (Manifest, error) {
	var m Manifest
	data, err := os.ReadFile(path)
	if err != nil {
		return m, fmt.Errorf("read the manifest: %w", err)
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return m, fmt.Errorf("decode the manifest %s: %w", path, err)
	}
	return m, nil
}

// syncDir makes the renames and removals in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync directory: %w", err)
	}
	serr := d.Sync()
	cerr := d.Close()
	if err := errors.Join(serr, cerr); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}
