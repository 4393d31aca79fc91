package backup

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"flotilla.dev/controlplane/internal/auth"
	"flotilla.dev/controlplane/internal/pki"
)

// FormatVersion is the archive format this binary writes and reads.
const FormatVersion = 1

// ManifestName is the archive's first member.
const ManifestName = "manifest.json"

// StoreFile is the SQLite store's name inside the archive.
const StoreFile = "flotilla.db"

// memberNames are the only names an archive may hold besides the
// manifest, in the order they are written: nothing from an archive is ever
// written outside the data directory or under another name.
var memberNames = []string{StoreFile, pki.CACertFile, pki.CAKeyFile, pki.ServerCertFile, pki.ServerKeyFile, auth.AdminTokenFile}

// requiredMembers are in every archive: without the CA, every agent would
// have to enroll again.
var requiredMembers = []string{pki.CACertFile, pki.CAKeyFile}

// Manifest describes an archive.
type Manifest struct {
	FormatVersion       int    `json:"format_version"`
	ControlPlaneVersion string `json:"controlplane_version"`
	StoreDriver         string `json:"store_driver"`
	// SchemaVersion is the SQLite store's schema version; 0 when the
	// archive holds no database (PostgreSQL).
	SchemaVersion int       `json:"schema_version"`
	CreatedAt     time.Time `json:"created_at"`
	Files         []File    `json:"files"`
}

// File is one member of the archive.
type File struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// file returns the entry for name.
func (m Manifest) file(name string) (File, bool) {
	for _, f := range m.Files {
		if f.Name == name {
			return f, true
		}
	}
	return File{}, false
}

// parseManifest decodes and checks a manifest: known format, known member
// names without duplicates, the CA present, and a database exactly when
// the store is SQLite.
func parseManifest(b []byte) (Manifest, error) {
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("manifest: %w", err)
	}
	if m.FormatVersion < 1 || m.FormatVersion > FormatVersion {
		return m, fmt.Errorf("manifest: format_version %d; this binary reads format %d (restore with the binary that wrote it or a newer one)", m.FormatVersion, FormatVersion)
	}
	seen := map[string]bool{}
	for _, f := range m.Files {
		if !slices.Contains(memberNames, f.Name) {
			return m, fmt.Errorf("manifest: file %q is not part of a control-plane backup", f.Name)
		}
		if seen[f.Name] {
			return m, fmt.Errorf("manifest: file %q is listed twice", f.Name)
		}
		if f.Size < 0 || len(f.SHA256) != 64 {
			return m, fmt.Errorf("manifest: file %q: size %d or sha256 %q is malformed", f.Name, f.Size, f.SHA256)
		}
		seen[f.Name] = true
	}
	for _, name := range requiredMembers {
		if !seen[name] {
			return m, fmt.Errorf("manifest: %s is missing; without the CA every agent would have to enroll again", name)
		}
	}
	switch m.StoreDriver {
	case "sqlite":
		if !seen[StoreFile] {
			return m, errors.New("manifest: store_driver sqlite but no " + StoreFile)
		}
	case "postgres":
		if seen[StoreFile] {
			return m, errors.New("manifest: store_driver postgres but the archive holds " + StoreFile)
		}
	default:
		return m, fmt.Errorf("manifest: store_driver %q is not sqlite or postgres", m.StoreDriver)
	}
	return m, nil
}
