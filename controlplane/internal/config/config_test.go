package config

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "cp.yaml")
	if err := os.WriteFile(file, []byte("data_dir: /from/file\nlisten_address: 127.0.0.1:1\nagent_lost_after: 45s\nlog:\n  format: console\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, _, err := Load([]string{"-config", file, "-listen", "127.0.0.1:3"},
		env(map[string]string{"FLOTILLA_LISTEN_ADDRESS": "127.0.0.1:2", "FLOTILLA_DATA_DIR": "/from/env"}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DataDir != "/from/env" {
		t.Errorf("data_dir = %q, want the environment to beat the file", cfg.DataDir)
	}
	if cfg.ListenAddress != "127.0.0.1:3" {
		t.Errorf("listen_address = %q, want the flag to beat the environment", cfg.ListenAddress)
	}
	if cfg.AgentLostAfter.Std() != 45*time.Second || cfg.Log.Format != "console" {
		t.Errorf("file values lost: %+v", cfg)
	}
	if cfg.Store.Path != "/from/env/flotilla.db" {
		t.Errorf("store.path = %q, want it under data_dir", cfg.Store.Path)
	}
}

func TestErrorsNameTheField(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("listen_adress: :1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	zeroRate := filepath.Join(dir, "rate.yaml")
	if err := os.WriteFile(zeroRate, []byte("registration_rate_limit:\n  per_minute: 0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"unknown yaml field", []string{"-config", bad}, nil, "listen_adress"},
		{"bad listen", []string{"-listen", "nope"}, nil, "listen_address"},
		{"bad duration env", nil, map[string]string{"FLOTILLA_AGENT_LOST_AFTER": "soon"}, "agent_lost_after"},
		{"too short lost", []string{"-agent-lost-after", "10ms"}, nil, "agent_lost_after"},
		{"bad log format", []string{"-log-format", "xml"}, nil, "log.format"},
		{"zero registration rate", []string{"-config", zeroRate}, nil, "registration_rate_limit"},
		{"stray argument", []string{"extra"}, nil, "unexpected argument"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := Load(tt.args, env(tt.env), io.Discard)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tt.want)
			}
		})
	}
}

func TestSecurityDefaults(t *testing.T) {
	cfg, _, err := Load(nil, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.AgentCertValidity.Std() != 7*24*time.Hour {
		t.Errorf("agent_cert_validity = %s, want 168h", cfg.AgentCertValidity.Std())
	}
	if cfg.RegistrationRateLimit != (RateLimit{PerMinute: 5, Burst: 10}) {
		t.Errorf("registration_rate_limit = %+v", cfg.RegistrationRateLimit)
	}
}
