package config

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestBootstrapDefaultsOff(t *testing.T) {
	cfg, _, err := Load(nil, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	b := cfg.Bootstrap
	if b.CACertFile != "" || b.JoinTokenFile != "" {
		t.Errorf("bootstrap files = %q, %q; want none unless configured", b.CACertFile, b.JoinTokenFile)
	}
	if b.JoinTokenTTL.Std() != 24*time.Hour || b.JoinTokenMaxUses != 10 {
		t.Errorf("bootstrap token defaults = %s, %d uses; want 24h, 10", b.JoinTokenTTL.Std(), b.JoinTokenMaxUses)
	}
}

func TestBootstrapSources(t *testing.T) {
	file := filepath.Join(t.TempDir(), "cp.yaml")
	if err := os.WriteFile(file, []byte("bootstrap:\n  ca_cert_file: /b/ca.crt\n  join_token_ttl: 2h\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, _, err := Load([]string{"-config", file, "-bootstrap-join-token-max-uses", "3"},
		env(map[string]string{"FLOTILLA_BOOTSTRAP_JOIN_TOKEN_FILE": "/b/join.token"}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := Bootstrap{CACertFile: "/b/ca.crt", JoinTokenFile: "/b/join.token", JoinTokenTTL: Duration(2 * time.Hour), JoinTokenMaxUses: 3}
	if cfg.Bootstrap != want {
		t.Errorf("bootstrap = %+v, want %+v", cfg.Bootstrap, want)
	}
}

func TestBootstrapErrorsNameTheField(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"relative token file", []string{"-bootstrap-join-token-file", "join.token"}, `bootstrap.join_token_file: "join.token" must be an absolute path`},
		{"relative CA file", []string{"-bootstrap-ca-cert-file", "ca.crt"}, `bootstrap.ca_cert_file: "ca.crt" must be an absolute path`},
		{"one file for both", []string{"-bootstrap-ca-cert-file", "/b/x", "-bootstrap-join-token-file", "/b/./x"}, "bootstrap.join_token_file: \"/b/./x\" is bootstrap.ca_cert_file too"},
		{"short ttl", []string{"-bootstrap-join-token-ttl", "10s"}, "bootstrap.join_token_ttl: 10s must be between 1m0s and 720h0m0s"},
		{"long ttl", []string{"-bootstrap-join-token-ttl", "1000h"}, "bootstrap.join_token_ttl: 1000h0m0s must be between"},
		{"no uses", []string{"-bootstrap-join-token-max-uses", "0"}, "bootstrap.join_token_max_uses: 0 must be between 1 and 100000"},
		{"uses not a number", []string{"-bootstrap-join-token-max-uses", "many"}, `bootstrap.join_token_max_uses (from -bootstrap-join-token-max-uses): "many" is not a whole number`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := Load(tt.args, env(nil), io.Discard)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}
