package backup

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// ManifestVersion is the version of the manifest's format.
const ManifestVersion = 1

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
