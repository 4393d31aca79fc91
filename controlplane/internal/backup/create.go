package backup

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"flotilla.dev/controlplane/internal/auth"
	"flotilla.dev/controlplane/internal/config"
	"flotilla.dev/controlplane/internal/fsutil"
	"flotilla.dev/controlplane/internal/pki"
	"flotilla.dev/controlplane/internal/store/sqlite"
)

// CreateConfig says what to back up and where to.
type CreateConfig struct {
	// Config is the control plane's configuration: data directory, store
	// and TLS files.
	Config config.Config
	// Out is the archive to write (mode 0600).
	Out string
	// Force replaces an existing Out.
	Force bool
	// Version is the control plane's version, recorded in the manifest.
	Version string
	// Now stamps created_at; time.Now when nil.
	Now func() time.Time
}

// member is a file to put in the archive, read from path.
type member struct {
	name, path string
}

// Create writes the archive: it snapshots a SQLite store while the control
// plane may be running, gathers the CA and the rest of the data directory's
// identity files, and writes everything with a manifest of checksums to a
// temporary file that is synced and renamed to Out. An existing Out is
// kept unless Force is set.
func Create(ctx context.Context, cfg CreateConfig) (Manifest, error) {
	if cfg.Out == "" {
		return Manifest{}, errors.New("backup: --out: required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if _, err := os.Stat(cfg.Out); err == nil && !cfg.Force {
		return Manifest{}, fmt.Errorf("backup: --out: %s exists; pass --force to replace it", cfg.Out)
	}
	work, err := os.MkdirTemp(filepath.Dir(cfg.Out), ".flotilla-backup-*")
	if err != nil {
		return Manifest{}, fmt.Errorf("backup: --out: %w", err)
	}
	defer os.RemoveAll(work)
	m := Manifest{
		FormatVersion: FormatVersion, ControlPlaneVersion: cfg.Version,
		StoreDriver: cfg.Config.Store.Driver, CreatedAt: cfg.Now().UTC(),
	}
	members, err := gather(ctx, cfg.Config, work, &m)
	if err != nil {
		return Manifest{}, err
	}
	for _, mb := range members {
		f, err := describe(mb)
		if err != nil {
			return Manifest{}, err
		}
		m.Files = append(m.Files, f)
	}
	if err := writeArchive(cfg.Out, cfg.Force, m, members); err != nil {
		return Manifest{}, err
	}
	return m, nil
}

// gather lists the members: the store's snapshot (SQLite), then the CA and
// the optional identity files that exist.
func gather(ctx context.Context, cfg config.Config, work string, m *Manifest) ([]member, error) {
	var members []member
	if cfg.Store.Driver == config.DriverSQLite {
		snap := filepath.Join(work, StoreFile)
		v, err := sqlite.Snapshot(ctx, cfg.Store.Path, snap)
		if err != nil {
			return nil, fmt.Errorf("backup: store: %w", err)
		}
		m.SchemaVersion = v
		members = append(members, member{StoreFile, snap})
	}
	caCert, caKey := cfg.TLS.CACertFile, cfg.TLS.CAKeyFile
	if caCert == "" {
		caCert, caKey = filepath.Join(cfg.DataDir, pki.CACertFile), filepath.Join(cfg.DataDir, pki.CAKeyFile)
	}
	members = append(members, member{pki.CACertFile, caCert}, member{pki.CAKeyFile, caKey})
	optional := []string{auth.AdminTokenFile}
	if cfg.TLS.CertFile == "" {
		// A server certificate the operator supplies is theirs to keep.
		optional = append([]string{pki.ServerCertFile, pki.ServerKeyFile}, optional...)
	}
	for _, name := range optional {
		path := filepath.Join(cfg.DataDir, name)
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		members = append(members, member{name, path})
	}
	return members, nil
}

// describe checksums one member.
func describe(mb member) (File, error) {
	f, err := os.Open(mb.path)
	if err != nil {
		return File{}, fmt.Errorf("backup: %s: %w", mb.name, err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return File{}, fmt.Errorf("backup: %s: %w", mb.name, err)
	}
	return File{Name: mb.name, Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

// writeArchive writes the gzipped tar to a temporary file next to out,
// syncs it and moves it into place: linked when out must not be replaced
// (which fails if out appeared meanwhile), renamed over it with force.
func writeArchive(out string, force bool, m Manifest, members []member) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".tmp-*")
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	defer func() {
		tmp.Close()
		os.Remove(tmp.Name())
	}()
	if err := tmp.Chmod(0o600); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if err := writeTar(tmp, m, members); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("backup: sync %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if force {
		err = os.Rename(tmp.Name(), out)
	} else {
		err = os.Link(tmp.Name(), out)
	}
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("backup: --out: %s exists; pass --force to replace it", out)
	}
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	return fsutil.SyncDir(filepath.Dir(out))
}

// writeTar writes the manifest, then every member with the size and
// checksum the manifest gives it: a file that changed since it was
// described fails the backup rather than producing an archive that restore
// would refuse.
func writeTar(w io.Writer, m Manifest, members []member) error {
	zw := gzip.NewWriter(w)
	tw := tar.NewWriter(zw)
	manifest, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("backup: manifest: %w", err)
	}
	if err := writeMember(tw, ManifestName, int64(len(manifest)), bytes.NewReader(manifest), m.CreatedAt); err != nil {
		return err
	}
	for i, mb := range members {
		if err := copyMember(tw, mb, m.Files[i], m.CreatedAt); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	return nil
}

func copyMember(tw *tar.Writer, mb member, want File, at time.Time) error {
	f, err := os.Open(mb.path)
	if err != nil {
		return fmt.Errorf("backup: %s: %w", mb.name, err)
	}
	defer f.Close()
	h := sha256.New()
	if err := writeMember(tw, mb.name, want.Size, io.TeeReader(f, h), at); err != nil {
		return err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want.SHA256 {
		return fmt.Errorf("backup: %s changed while it was being archived; run the backup again", mb.path)
	}
	return nil
}

func writeMember(tw *tar.Writer, name string, size int64, r io.Reader, at time.Time) error {
	hdr := &tar.Header{Name: name, Mode: 0o600, Size: size, ModTime: at, Typeflag: tar.TypeReg}
	if err := tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("backup: %s: %w", name, err)
	}
	n, err := io.Copy(tw, r)
	if err != nil {
		return fmt.Errorf("backup: %s: %w", name, err)
	}
	if n != size {
		return fmt.Errorf("backup: %s changed size while it was being archived; run the backup again", name)
	}
	return nil
}
