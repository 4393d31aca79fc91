package pki

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"flotilla.dev/controlplane/internal/fsutil"
)

// File names inside the data directory.
const (
	CACertFile     = "ca.crt"
	CAKeyFile      = "ca.key"
	ServerCertFile = "server.crt"
	ServerKeyFile  = "server.key"
)

// Validity periods of generated material.
const (
	CAValidity     = 10 * 365 * 24 * time.Hour
	ServerValidity = 365 * 24 * time.Hour
	// serverRenewBefore reissues a generated server certificate that expires
	// within this window at start-up.
	serverRenewBefore = 30 * 24 * time.Hour
)

// FilesConfig says where TLS material comes from. Empty paths mean "generate
// into Dir on first start and reuse afterwards".
type FilesConfig struct {
	Dir         string   // data directory (0700)
	CACertFile  string   // optional: an existing CA certificate
	CAKeyFile   string   // optional: its key
	ServerCert  string   // optional: an existing server certificate chain
	ServerKey   string   // optional: its key
	ServerHosts []string // DNS names and IPs for a generated server certificate
	Now         func() time.Time
}

// Material is the loaded TLS material.
type Material struct {
	CA     *CA
	Server tls.Certificate
	// Generated lists the files created by this call, for the start-up log.
	Generated []string
}

// LoadOrCreate loads the CA and server certificate, generating whatever is
// missing into the data directory.
func LoadOrCreate(cfg FilesConfig) (*Material, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	m := &Material{}
	ca, err := loadOrCreateCA(cfg, m)
	if err != nil {
		return nil, err
	}
	m.CA = ca
	if err := loadOrCreateServer(cfg, m); err != nil {
		return nil, err
	}
	return m, nil
}

func loadOrCreateCA(cfg FilesConfig, m *Material) (*CA, error) {
	certPath, keyPath := cfg.CACertFile, cfg.CAKeyFile
	if (certPath == "") != (keyPath == "") {
		return nil, errors.New("tls: ca_cert_file and ca_key_file must be given together")
	}
	if certPath == "" {
		certPath, keyPath = filepath.Join(cfg.Dir, CACertFile), filepath.Join(cfg.Dir, CAKeyFile)
		certOK, keyOK := exists(certPath), exists(keyPath)
		switch {
		case !certOK && !keyOK:
			ca, keyPEM, err := NewCA("Flotilla CA", CAValidity, cfg.Now)
			if err != nil {
				return nil, err
			}
			if err := fsutil.WriteFileAtomic(keyPath, keyPEM, 0o600); err != nil {
				return nil, err
			}
			if err := fsutil.WriteFileAtomic(certPath, ca.CertificatePEM(), 0o644); err != nil {
				return nil, err
			}
			m.Generated = append(m.Generated, certPath, keyPath)
			return ca, nil
		case certOK != keyOK:
			return nil, fmt.Errorf("tls: found only one of %s and %s; restore the other or remove both to generate a new CA (agents will then need to re-register)", certPath, keyPath)
		}
	}
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, fmt.Errorf("tls: read CA certificate: %w", err)
	}
	keyPEM, err := fsutil.ReadSecretFile(keyPath)
	if err != nil {
		return nil, fmt.Errorf("tls: read CA key: %w", err)
	}
	return LoadCA(certPEM, keyPEM, cfg.Now)
}

func loadOrCreateServer(cfg FilesConfig, m *Material) error {
	if (cfg.ServerCert == "") != (cfg.ServerKey == "") {
		return errors.New("tls: cert_file and key_file must be given together")
	}
	if cfg.ServerCert != "" {
		keyPEM, err := fsutil.ReadSecretFile(cfg.ServerKey)
		if err != nil {
			return fmt.Errorf("tls: read server key: %w", err)
		}
		certPEM, err := os.ReadFile(cfg.ServerCert)
		if err != nil {
			return fmt.Errorf("tls: read server certificate: %w", err)
		}
		pair, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return fmt.Errorf("tls: server certificate %s: %w", cfg.ServerCert, err)
		}
		m.Server = pair
		return nil
	}
	certPath, keyPath := filepath.Join(cfg.Dir, ServerCertFile), filepath.Join(cfg.Dir, ServerKeyFile)
	pair, ok, err := reusableServerCert(certPath, keyPath, m.CA, cfg)
	if err != nil {
		return err
	}
	if ok {
		m.Server = pair
		return nil
	}
	chainPEM, keyPEM, err := m.CA.IssueServer(cfg.ServerHosts, ServerValidity)
	if err != nil {
		return err
	}
	if err := fsutil.WriteFileAtomic(keyPath, keyPEM, 0o600); err != nil {
		return err
	}
	if err := fsutil.WriteFileAtomic(certPath, chainPEM, 0o644); err != nil {
		return err
	}
	m.Generated = append(m.Generated, certPath, keyPath)
	pair, err = tls.X509KeyPair(chainPEM, keyPEM)
	if err != nil {
		return fmt.Errorf("tls: generated server certificate: %w", err)
	}
	m.Server = pair
	return nil
}

// reusableServerCert loads a previously generated server certificate when it
// is signed by the current CA, covers every configured host and is not about
// to expire.
func reusableServerCert(certPath, keyPath string, ca *CA, cfg FilesConfig) (tls.Certificate, bool, error) {
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return tls.Certificate{}, false, nil
	}
	if !exists(keyPath) {
		return tls.Certificate{}, false, nil
	}
	// A key that others could read may have leaked: refuse to start rather
	// than silently replace it, so that an operator looks into it.
	keyPEM, err := fsutil.ReadSecretFile(keyPath)
	if err != nil {
		return tls.Certificate{}, false, fmt.Errorf("tls: server key: %w", err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil || pair.Leaf == nil {
		return tls.Certificate{}, false, nil
	}
	leaf := pair.Leaf
	if leaf.CheckSignatureFrom(ca.Certificate()) != nil || cfg.Now().Add(serverRenewBefore).After(leaf.NotAfter) {
		return tls.Certificate{}, false, nil
	}
	for _, h := range cfg.ServerHosts {
		if leaf.VerifyHostname(h) != nil {
			return tls.Certificate{}, false, nil
		}
	}
	return pair, true, nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return !errors.Is(err, fs.ErrNotExist)
}

// DefaultServerHosts are the names a generated server certificate covers
// besides those configured: loopback and this machine's hostname.
func DefaultServerHosts(extra []string) []string {
	hosts := []string{"localhost", "127.0.0.1", "::1"}
	if h, err := os.Hostname(); err == nil && h != "" {
		hosts = append(hosts, h)
	}
	for _, e := range extra {
		if !slices.Contains(hosts, e) {
			hosts = append(hosts, e)
		}
	}
	return hosts
}
