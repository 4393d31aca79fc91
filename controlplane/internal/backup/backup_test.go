package backup

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"flotilla.dev/controlplane/internal/auth"
	"flotilla.dev/controlplane/internal/config"
	"flotilla.dev/controlplane/internal/datadir"
	"flotilla.dev/controlplane/internal/pki"
	"flotilla.dev/controlplane/internal/store"
	"flotilla.dev/controlplane/internal/store/sqlite"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var testNow = time.Date(2026, 12, 7, 4, 0, 0, 0, time.UTC)

// liveDataDir builds a control plane's data directory — a SQLite store with
// a join token, kept open as a running control plane keeps it, the
// generated CA and server certificate, the admin token — and returns its
// configuration.
func liveDataDir(t *testing.T) config.Config {
	t.Helper()
	cfg := config.Default()
	cfg.DataDir = filepath.Join(t.TempDir(), "data")
	cfg.Store.Path = filepath.Join(cfg.DataDir, StoreFile)
	if err := os.Mkdir(cfg.DataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	st, err := sqlite.Open(ctx, cfg.Store.Path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	tok := store.JoinToken{ID: "tok-1", Hash: []byte("h"), Description: "kept", MaxUses: 1, CreatedAt: testNow, ExpiresAt: testNow.Add(time.Hour)}
	if err := st.CreateJoinToken(ctx, tok); err != nil {
		t.Fatal(err)
	}
	if _, err := pki.LoadOrCreate(pki.FilesConfig{Dir: cfg.DataDir, ServerHosts: []string{"localhost"}}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cfg.DataDir, auth.AdminTokenFile), []byte("admin-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func create(t *testing.T, cfg config.Config) (string, Manifest) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "cp.backup")
	m, err := Create(context.Background(), CreateConfig{Config: cfg, Out: out, Version: "v1.2.3", Now: func() time.Time { return testNow }})
	if err != nil {
		t.Fatal(err)
	}
	return out, m
}

func TestBackupAndRestoreOnANewHost(t *testing.T) {
	cfg := liveDataDir(t)
	out, m := create(t, cfg)
	if info, err := os.Stat(out); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("archive: %v, mode %v, want 0600", err, info.Mode().Perm())
	}
	latest, _ := sqlite.LatestSchemaVersion()
	if m.FormatVersion != FormatVersion || m.ControlPlaneVersion != "v1.2.3" || m.SchemaVersion != latest || m.StoreDriver != "sqlite" || !m.CreatedAt.Equal(testNow) {
		t.Errorf("manifest = %+v", m)
	}
	var names []string
	for _, f := range m.Files {
		names = append(names, f.Name)
	}
	if got := strings.Join(names, ","); got != "flotilla.db,ca.crt,ca.key,server.crt,server.key,admin.token" {
		t.Errorf("members %s", got)
	}

	newDir := filepath.Join(t.TempDir(), "new-host", "data")
	got, err := Restore(context.Background(), RestoreConfig{From: out, DataDir: newDir})
	if err != nil {
		t.Fatal(err)
	}
	if got.CreatedAt != m.CreatedAt || len(got.Files) != len(m.Files) {
		t.Errorf("Restore returned %+v", got)
	}
	if info, err := os.Stat(newDir); err != nil || info.Mode().Perm() != 0o700 {
		t.Errorf("data dir mode %v, %v; want 0700", info.Mode().Perm(), err)
	}
	for _, name := range names[1:] {
		want, _ := os.ReadFile(filepath.Join(cfg.DataDir, name))
		b, err := os.ReadFile(filepath.Join(newDir, name))
		if err != nil || !bytes.Equal(b, want) {
			t.Errorf("%s restored as %d bytes (%v), want the original %d bytes", name, len(b), err, len(want))
		}
	}
	entries, _ := os.ReadDir(newDir)
	for _, e := range entries {
		info, _ := e.Info()
		if info.Mode().Perm() != 0o600 || strings.Contains(e.Name(), ".restore-") {
			t.Errorf("%s: mode %v (want 0600), no temporary files", e.Name(), info.Mode().Perm())
		}
	}
	st, err := sqlite.Open(context.Background(), filepath.Join(newDir, StoreFile))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if tok, err := st.GetJoinToken(context.Background(), "tok-1"); err != nil || tok.Description != "kept" {
		t.Errorf("restored store: token %+v, %v", tok, err)
	}
	if _, err := pki.LoadOrCreate(pki.FilesConfig{Dir: newDir, ServerHosts: []string{"localhost"}}); err != nil {
		t.Errorf("the restored CA does not load: %v", err)
	}
}

func TestCreateKeepsAnExistingArchive(t *testing.T) {
	cfg := liveDataDir(t)
	out := filepath.Join(t.TempDir(), "cp.backup")
	if err := os.WriteFile(out, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Create(context.Background(), CreateConfig{Config: cfg, Out: out})
	if err == nil || !strings.Contains(err.Error(), "--out: "+out+" exists; pass --force") {
		t.Fatalf("Create over an existing file: %v", err)
	}
	if b, _ := os.ReadFile(out); string(b) != "precious" {
		t.Fatal("the existing file was changed")
	}
	if _, err := Create(context.Background(), CreateConfig{Config: cfg, Out: out, Force: true}); err != nil {
		t.Fatalf("Create with Force: %v", err)
	}
	entries, _ := os.ReadDir(filepath.Dir(out))
	if len(entries) != 1 {
		t.Errorf("the archive's directory holds %d entries, want only the archive (no temporary files)", len(entries))
	}
}

func TestCreateRefusals(t *testing.T) {
	tests := []struct {
		name   string
		adjust func(cfg *config.Config)
		want   string
	}{
		{"no store", func(c *config.Config) { c.Store.Path = filepath.Join(c.DataDir, "missing.db") }, "backup: store:"},
		{"no CA key", func(c *config.Config) { os.Remove(filepath.Join(c.DataDir, pki.CAKeyFile)) }, "backup: ca.key:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := liveDataDir(t)
			tt.adjust(&cfg)
			out := filepath.Join(t.TempDir(), "cp.backup")
			_, err := Create(context.Background(), CreateConfig{Config: cfg, Out: out})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
			if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
				t.Error("a failed backup left an archive")
			}
		})
	}
}

// TestPostgresBackupHoldsTheCA: with the store in PostgreSQL, the archive
// holds the identity files and no database, and restores them.
func TestPostgresBackupHoldsTheCA(t *testing.T) {
	cfg := liveDataDir(t)
	cfg.Store.Driver = config.DriverPostgres
	out, m := create(t, cfg)
	if _, ok := m.file(StoreFile); ok || m.SchemaVersion != 0 || m.StoreDriver != "postgres" {
		t.Errorf("manifest = %+v", m)
	}
	dir := filepath.Join(t.TempDir(), "data")
	if _, err := Restore(context.Background(), RestoreConfig{From: out, DataDir: dir}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, StoreFile)); !errors.Is(err, os.ErrNotExist) {
		t.Error("a PostgreSQL archive restored a SQLite store")
	}
	if _, err := os.Stat(filepath.Join(dir, pki.CAKeyFile)); err != nil {
		t.Error(err)
	}
}

// archiveMembers reads an archive into its manifest and members.
func archiveMembers(t *testing.T, path string) (Manifest, map[string][]byte, []string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	members, order := map[string][]byte{}, []string{}
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		members[hdr.Name], order = b, append(order, hdr.Name)
	}
	var m Manifest
	if err := json.Unmarshal(members[ManifestName], &m); err != nil {
		t.Fatal(err)
	}
	return m, members, order
}

// writeArchiveFile writes members in order, the manifest re-encoded from m.
func writeArchiveFile(t *testing.T, m Manifest, members map[string][]byte, order []string) string {
	t.Helper()
	b, _ := json.Marshal(m)
	members[ManifestName] = b
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, name := range order {
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o600, Size: int64(len(members[name])), Typeflag: tar.TypeReg})
		tw.Write(members[name])
	}
	tw.Close()
	zw.Close()
	path := filepath.Join(t.TempDir(), "edited.backup")
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestRestoreRefusals(t *testing.T) {
	cfg := liveDataDir(t)
	good, _ := create(t, cfg)
	tests := []struct {
		name  string
		edit  func(m *Manifest, members map[string][]byte, order *[]string)
		setup func(t *testing.T, dir string)
		force bool
		want  string
	}{
		{"damaged member", func(_ *Manifest, mb map[string][]byte, _ *[]string) { mb[pki.CAKeyFile][10] ^= 1 }, nil, false, "the archive is damaged"},
		{"schema too new", func(m *Manifest, _ map[string][]byte, _ *[]string) { m.SchemaVersion = 99 }, nil, false, "schema version 99, this binary knows up to"},
		{"format too new", func(m *Manifest, _ map[string][]byte, _ *[]string) { m.FormatVersion = 2 }, nil, false, "format_version 2"},
		{"foreign member", func(m *Manifest, mb map[string][]byte, order *[]string) {
			m.Files = append(m.Files, File{Name: "../../etc/cron.d/x", Size: 1, SHA256: strings.Repeat("0", 64)})
		}, nil, false, `file "../../etc/cron.d/x" is not part of a control-plane backup`},
		{"no CA", func(m *Manifest, _ map[string][]byte, order *[]string) {
			m.Files = m.Files[:1]
			*order = (*order)[:2]
		}, nil, false, "ca.crt is missing"},
		{"truncated", func(_ *Manifest, _ map[string][]byte, order *[]string) { *order = (*order)[:3] }, nil, false, "truncated: 2 of the manifest's 6 files"},
		{"not empty", nil, func(t *testing.T, dir string) { os.MkdirAll(filepath.Join(dir, "old"), 0o700) }, false, "is not empty (it holds old)"},
		{"held by a control plane", nil, func(t *testing.T, dir string) {
			os.MkdirAll(dir, 0o700)
			l, err := datadir.Acquire(dir, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { l.Release() })
		}, true, "data directory is in use"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			from := good
			if tt.edit != nil {
				m, members, order := archiveMembers(t, good)
				tt.edit(&m, members, &order)
				from = writeArchiveFile(t, m, members, order)
			}
			dir := filepath.Join(t.TempDir(), "data")
			if tt.setup != nil {
				tt.setup(t, dir)
			}
			before, _ := os.ReadDir(dir)
			_, err := Restore(context.Background(), RestoreConfig{From: from, DataDir: dir, Force: tt.force})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
			after, _ := os.ReadDir(dir)
			for _, e := range after {
				if !containsEntry(before, e.Name()) && e.Name() != datadir.LockFile {
					t.Errorf("a refused restore left %s in the data directory", e.Name())
				}
			}
		})
	}
}

func containsEntry(entries []os.DirEntry, name string) bool {
	for _, e := range entries {
		if e.Name() == name {
			return true
		}
	}
	return false
}

// TestRestoreForceReplaces restores over a data directory that holds an
// older store with a stale WAL, which must not survive.
func TestRestoreForceReplaces(t *testing.T) {
	cfg := liveDataDir(t)
	out, _ := create(t, cfg)
	dir := filepath.Join(t.TempDir(), "data")
	os.MkdirAll(dir, 0o700)
	for _, name := range []string{StoreFile, StoreFile + "-wal", pki.CAKeyFile} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("old"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Restore(context.Background(), RestoreConfig{From: out, DataDir: dir, Force: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, StoreFile+"-wal")); !errors.Is(err, os.ErrNotExist) {
		t.Error("the old store's WAL survived the restore")
	}
	if err := sqlite.CheckIntegrity(context.Background(), filepath.Join(dir, StoreFile)); err != nil {
		t.Error(err)
	}
	key, _ := os.ReadFile(filepath.Join(dir, pki.CAKeyFile))
	if string(key) == "old" {
		t.Error("the CA key was not replaced")
	}
}
