package pki_test

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"flotilla.dev/controlplane/internal/pki"
)

func filesConfig(dir string, now time.Time, hosts ...string) pki.FilesConfig {
	return pki.FilesConfig{Dir: dir, ServerHosts: hosts, Now: fixed(now)}
}

func mustLoadOrCreate(t *testing.T, cfg pki.FilesConfig) *pki.Material {
	t.Helper()
	m, err := pki.LoadOrCreate(cfg)
	if err != nil {
		t.Fatalf("LoadOrCreate: %v", err)
	}
	return m
}

func paths(dir string, names ...string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = filepath.Join(dir, n)
	}
	return out
}

func serverLeaf(t *testing.T, m *pki.Material) *x509.Certificate {
	t.Helper()
	if m.Server.Leaf == nil {
		t.Fatal("server key pair has no parsed leaf")
	}
	return m.Server.Leaf
}

func verifyServer(t *testing.T, m *pki.Material, host string, now time.Time) error {
	t.Helper()
	_, err := serverLeaf(t, m).Verify(x509.VerifyOptions{Roots: m.CA.Pool(), DNSName: host, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	return err
}

func fileMode(t *testing.T, path string) os.FileMode {
	t.Helper()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return info.Mode().Perm()
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestLoadOrCreateGeneratesThenReuses(t *testing.T) {
	dir := t.TempDir()
	cfg := filesConfig(dir, t0, "localhost", "127.0.0.1")
	m := mustLoadOrCreate(t, cfg)

	if want := paths(dir, pki.CACertFile, pki.CAKeyFile, pki.ServerCertFile, pki.ServerKeyFile); !slices.Equal(m.Generated, want) {
		t.Errorf("Generated = %v, want %v", m.Generated, want)
	}
	for name, want := range map[string]os.FileMode{
		pki.CACertFile: 0o644, pki.CAKeyFile: 0o600, pki.ServerCertFile: 0o644, pki.ServerKeyFile: 0o600,
	} {
		if got := fileMode(t, filepath.Join(dir, name)); got != want {
			t.Errorf("%s has mode %04o, want %04o", name, got, want)
		}
	}
	if got := dirNames(t, dir); !slices.Equal(got, []string{"ca.crt", "ca.key", "server.crt", "server.key"}) {
		t.Errorf("data dir holds %v, want exactly the four files", got)
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, pki.CACertFile))
	if err != nil {
		t.Fatal(err)
	}
	if string(caPEM) != string(m.CA.CertificatePEM()) {
		t.Errorf("ca.crt differs from the loaded CA")
	}
	if len(m.Server.Certificate) != 2 || string(m.Server.Certificate[1]) != string(m.CA.Certificate().Raw) {
		t.Errorf("server chain has %d certificates, want [leaf, CA]", len(m.Server.Certificate))
	}
	for _, h := range []string{"localhost", "127.0.0.1"} {
		if err := verifyServer(t, m, h, t0); err != nil {
			t.Errorf("server certificate does not verify for %s: %v", h, err)
		}
	}

	// Second start: everything is reused.
	m2 := mustLoadOrCreate(t, cfg)
	if len(m2.Generated) != 0 {
		t.Errorf("second LoadOrCreate generated %v", m2.Generated)
	}
	if m2.CA.Fingerprint() != m.CA.Fingerprint() {
		t.Errorf("CA fingerprint changed: %s -> %s", m.CA.Fingerprint(), m2.CA.Fingerprint())
	}
	if !serverLeaf(t, m2).Equal(serverLeaf(t, m)) {
		t.Errorf("server certificate reissued although nothing changed")
	}
	// The CA loaded from disk can still sign.
	if _, _, err := m2.CA.IssueServer([]string{"x"}, time.Hour); err != nil {
		t.Errorf("loaded CA cannot sign: %v", err)
	}
}

func TestLoadOrCreateServerReissue(t *testing.T) {
	tests := []struct {
		name    string
		now     time.Time
		hosts   []string
		prepare func(t *testing.T, dir string)
		reissue bool
	}{
		{name: "same hosts", now: t0, hosts: []string{"localhost", "127.0.0.1"}},
		{name: "subset of hosts", now: t0, hosts: []string{"127.0.0.1"}},
		{name: "new DNS name", now: t0, hosts: []string{"localhost", "127.0.0.1", "cp.example"}, reissue: true},
		{name: "new IP", now: t0, hosts: []string{"localhost", "127.0.0.1", "10.0.0.9"}, reissue: true},
		{name: "31 days before expiry", now: t0.Add(pki.ServerValidity - 31*24*time.Hour), hosts: []string{"localhost"}},
		{name: "29 days before expiry", now: t0.Add(pki.ServerValidity - 29*24*time.Hour), hosts: []string{"localhost"}, reissue: true},
		{name: "server certificate missing", now: t0, hosts: []string{"localhost"}, reissue: true,
			prepare: func(t *testing.T, dir string) { remove(t, dir, pki.ServerCertFile) }},
		{name: "server key missing", now: t0, hosts: []string{"localhost"}, reissue: true,
			prepare: func(t *testing.T, dir string) { remove(t, dir, pki.ServerKeyFile) }},
		{name: "server certificate corrupt", now: t0, hosts: []string{"localhost"}, reissue: true,
			prepare: func(t *testing.T, dir string) { write(t, dir, pki.ServerCertFile, "garbage", 0o644) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			first := mustLoadOrCreate(t, filesConfig(dir, t0, "localhost", "127.0.0.1"))
			if tt.prepare != nil {
				tt.prepare(t, dir)
			}
			m := mustLoadOrCreate(t, filesConfig(dir, tt.now, tt.hosts...))
			if m.CA.Fingerprint() != first.CA.Fingerprint() {
				t.Errorf("CA changed")
			}
			var want []string
			if tt.reissue {
				want = paths(dir, pki.ServerCertFile, pki.ServerKeyFile)
			}
			if !slices.Equal(m.Generated, want) {
				t.Errorf("Generated = %v, want %v", m.Generated, want)
			}
			if reissued := !serverLeaf(t, m).Equal(serverLeaf(t, first)); reissued != tt.reissue {
				t.Errorf("server certificate reissued = %v, want %v", reissued, tt.reissue)
			}
			for _, h := range tt.hosts {
				if err := verifyServer(t, m, h, tt.now); err != nil {
					t.Errorf("server certificate does not cover %s: %v", h, err)
				}
			}
			if got := fileMode(t, filepath.Join(dir, pki.ServerKeyFile)); got != 0o600 {
				t.Errorf("server.key has mode %04o, want 0600", got)
			}
			// What was written is what a third start reuses.
			if again := mustLoadOrCreate(t, filesConfig(dir, tt.now, tt.hosts...)); len(again.Generated) != 0 || !serverLeaf(t, again).Equal(serverLeaf(t, m)) {
				t.Errorf("third start generated %v", again.Generated)
			}
		})
	}
}

func TestLoadOrCreateNewCAReissuesServer(t *testing.T) {
	dir := t.TempDir()
	first := mustLoadOrCreate(t, filesConfig(dir, t0, "localhost"))
	remove(t, dir, pki.CACertFile)
	remove(t, dir, pki.CAKeyFile)
	m := mustLoadOrCreate(t, filesConfig(dir, t0, "localhost"))
	if m.CA.Fingerprint() == first.CA.Fingerprint() {
		t.Fatal("CA not regenerated")
	}
	if want := paths(dir, pki.CACertFile, pki.CAKeyFile, pki.ServerCertFile, pki.ServerKeyFile); !slices.Equal(m.Generated, want) {
		t.Errorf("Generated = %v, want %v (a server certificate of the old CA is useless)", m.Generated, want)
	}
	if err := verifyServer(t, m, "localhost", t0); err != nil {
		t.Errorf("server certificate does not verify against the new CA: %v", err)
	}
}

func TestLoadOrCreateErrors(t *testing.T) {
	tests := []struct {
		name    string
		prepare func(t *testing.T, dir string) // after a first successful start
		cfg     func(dir string) pki.FilesConfig
		wantErr []string
	}{
		{
			name:    "only ca.crt",
			prepare: func(t *testing.T, dir string) { remove(t, dir, pki.CAKeyFile) },
			wantErr: []string{"found only one of", "ca.crt", "ca.key"},
		},
		{
			name:    "only ca.key",
			prepare: func(t *testing.T, dir string) { remove(t, dir, pki.CACertFile) },
			wantErr: []string{"found only one of", "ca.crt", "ca.key"},
		},
		{
			name:    "ca.key group-readable",
			prepare: func(t *testing.T, dir string) { chmod(t, dir, pki.CAKeyFile, 0o640) },
			wantErr: []string{"CA key", "mode 0640", "chmod 600"},
		},
		{
			// A generated server key that others could read may have leaked:
			// refuse to start instead of silently replacing it.
			name:    "server.key group-readable",
			prepare: func(t *testing.T, dir string) { chmod(t, dir, pki.ServerKeyFile, 0o640) },
			wantErr: []string{"server key", "mode 0640", "chmod 600"},
		},
		{
			name:    "ca.key world-readable",
			prepare: func(t *testing.T, dir string) { chmod(t, dir, pki.CAKeyFile, 0o604) },
			wantErr: []string{"CA key", "mode 0604"},
		},
		{
			name: "ca.key of another CA",
			prepare: func(t *testing.T, dir string) {
				_, key := newCA(t, time.Hour)
				write(t, dir, pki.CAKeyFile, string(key), 0o600)
			},
			wantErr: []string{"does not match"},
		},
		{
			name:    "ca.crt corrupt",
			prepare: func(t *testing.T, dir string) { write(t, dir, pki.CACertFile, "garbage", 0o644) },
			wantErr: []string{"CA certificate"},
		},
		{
			name: "CA certificate without key",
			cfg: func(dir string) pki.FilesConfig {
				c := filesConfig(dir, t0)
				c.CACertFile = filepath.Join(dir, "ca.crt")
				return c
			},
			wantErr: []string{"ca_cert_file and ca_key_file must be given together"},
		},
		{
			name: "server certificate without key",
			cfg: func(dir string) pki.FilesConfig {
				c := filesConfig(dir, t0)
				c.ServerCert = filepath.Join(dir, "server.crt")
				return c
			},
			wantErr: []string{"cert_file and key_file must be given together"},
		},
		{
			name: "configured server key group-readable",
			prepare: func(t *testing.T, dir string) {
				copyFile(t, dir, pki.ServerKeyFile, "my.key", 0o640)
				copyFile(t, dir, pki.ServerCertFile, "my.crt", 0o644)
			},
			cfg: func(dir string) pki.FilesConfig {
				c := filesConfig(dir, t0)
				c.ServerCert, c.ServerKey = filepath.Join(dir, "my.crt"), filepath.Join(dir, "my.key")
				return c
			},
			wantErr: []string{"server key", "mode 0640"},
		},
		{
			name: "configured server key not matching the certificate",
			prepare: func(t *testing.T, dir string) {
				_, key := newCA(t, time.Hour)
				write(t, dir, "my.key", string(key), 0o600)
				copyFile(t, dir, pki.ServerCertFile, "my.crt", 0o644)
			},
			cfg: func(dir string) pki.FilesConfig {
				c := filesConfig(dir, t0)
				c.ServerCert, c.ServerKey = filepath.Join(dir, "my.crt"), filepath.Join(dir, "my.key")
				return c
			},
			wantErr: []string{"my.crt"},
		},
		{
			name:    "missing data directory",
			cfg:     func(dir string) pki.FilesConfig { return filesConfig(filepath.Join(dir, "missing"), t0) },
			wantErr: []string{"missing"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			mustLoadOrCreate(t, filesConfig(dir, t0, "localhost"))
			if tt.prepare != nil {
				tt.prepare(t, dir)
			}
			before := dirNames(t, dir)
			cfg := filesConfig(dir, t0, "localhost")
			if tt.cfg != nil {
				cfg = tt.cfg(dir)
			}
			m, err := pki.LoadOrCreate(cfg)
			if err == nil {
				t.Fatalf("LoadOrCreate succeeded (generated %v), want an error", m.Generated)
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
			if after := dirNames(t, dir); !slices.Equal(after, before) {
				t.Errorf("a failed LoadOrCreate changed the data dir: %v -> %v", before, after)
			}
		})
	}
}

func TestLoadOrCreateConfiguredFiles(t *testing.T) {
	src := t.TempDir()
	ca, caKey := newCA(t, pki.CAValidity)
	chain, key, err := ca.IssueServer([]string{"cp.example"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	write(t, src, "my-ca.crt", string(ca.CertificatePEM()), 0o644)
	write(t, src, "my-ca.key", string(caKey), 0o600)
	write(t, src, "my.crt", string(chain), 0o644)
	write(t, src, "my.key", string(key), 0o600)

	tests := []struct {
		name          string
		server        bool
		wantGenerated []string
	}{
		{name: "configured CA, generated server certificate", wantGenerated: []string{pki.ServerCertFile, pki.ServerKeyFile}},
		{name: "configured CA and server certificate", server: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := filesConfig(dir, t0, "localhost")
			cfg.CACertFile, cfg.CAKeyFile = filepath.Join(src, "my-ca.crt"), filepath.Join(src, "my-ca.key")
			if tt.server {
				cfg.ServerCert, cfg.ServerKey = filepath.Join(src, "my.crt"), filepath.Join(src, "my.key")
			}
			m := mustLoadOrCreate(t, cfg)
			if m.CA.Fingerprint() != ca.Fingerprint() {
				t.Errorf("loaded CA %s, want the configured %s", m.CA.Fingerprint(), ca.Fingerprint())
			}
			want := paths(dir, tt.wantGenerated...)
			if !slices.Equal(m.Generated, want) && (len(m.Generated) != 0 || len(want) != 0) {
				t.Errorf("Generated = %v, want %v", m.Generated, want)
			}
			if got := dirNames(t, dir); len(got) != len(tt.wantGenerated) {
				t.Errorf("data dir holds %v, want only %v", got, tt.wantGenerated)
			}
			host := "localhost"
			if tt.server {
				host = "cp.example"
			}
			if err := verifyServer(t, m, host, t0); err != nil {
				t.Errorf("server certificate does not verify for %s: %v", host, err)
			}
		})
	}
}

func TestDefaultServerHosts(t *testing.T) {
	hostname, err := os.Hostname()
	if err != nil {
		t.Skip("no hostname")
	}
	got := pki.DefaultServerHosts([]string{"cp.example", "localhost", "cp.example", hostname, "10.0.0.1"})
	want := []string{"localhost", "127.0.0.1", "::1"}
	if hostname != "" {
		want = append(want, hostname)
	}
	want = append(want, "cp.example", "10.0.0.1")
	if !slices.Equal(got, want) {
		t.Errorf("DefaultServerHosts = %v, want %v", got, want)
	}
}

func remove(t *testing.T, dir, name string) {
	t.Helper()
	if err := os.Remove(filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
}

func chmod(t *testing.T, dir, name string, mode os.FileMode) {
	t.Helper()
	if err := os.Chmod(filepath.Join(dir, name), mode); err != nil {
		t.Fatal(err)
	}
}

func write(t *testing.T, dir, name, content string, mode os.FileMode) {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	chmod(t, dir, name, mode) // WriteFile keeps the mode of an existing file and applies the umask
}

func copyFile(t *testing.T, dir, from, to string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, from))
	if err != nil {
		t.Fatal(err)
	}
	write(t, dir, to, string(b), mode)
}
