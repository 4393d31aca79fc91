package server_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"flotilla.dev/controlplane/internal/config"
	"flotilla.dev/controlplane/internal/server/servertest"
)

// A control plane configured with bootstrap files writes the CA
// certificate and a join token there, and an agent registers with that
// token; a restart keeps the token.
func TestBootstrapFilesRegisterAnAgent(t *testing.T) {
	shared := filepath.Join(t.TempDir(), "bootstrap")
	caFile, tokenFile := filepath.Join(shared, "ca.crt"), filepath.Join(shared, "join.token")
	dataDir := t.TempDir()
	opts := []servertest.Option{servertest.WithDataDir(dataDir), servertest.WithConfig(func(c *config.Config) {
		c.Bootstrap.CACertFile, c.Bootstrap.JoinTokenFile, c.Bootstrap.JoinTokenMaxUses = caFile, tokenFile, 2
	})}
	h := start(t, opts...)

	ca, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ca, h.srv.CA().CertificatePEM()) {
		t.Errorf("%s does not hold the control plane's CA certificate", caFile)
	}
	if info, err := os.Stat(caFile); err != nil || info.Mode().Perm() != 0o644 {
		t.Errorf("CA file: %v, %v; want it 0644 (public)", info, err)
	}
	if info, err := os.Stat(tokenFile); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("join token file: %v, %v; want it 0600", info, err)
	}
	token, err := os.ReadFile(tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := h.register(strings.TrimSpace(string(token)), "host-1", nil); err != nil {
		t.Fatalf("register with the bootstrap token: %v", err)
	}

	h.stop()
	start(t, opts...)
	again, err := os.ReadFile(tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again, token) {
		t.Errorf("a restart replaced the bootstrap join token, which still had a use and its life left")
	}
}
