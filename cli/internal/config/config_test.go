package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestResolvePrecedence(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "prod.token")
	if err := os.WriteFile(tokenFile, []byte("fat_prod\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	file := File{CurrentContext: "prod", Contexts: map[string]Context{
		"prod":    {Address: "cp.prod:7443", CAFile: "/etc/prod-ca.crt", TokenFile: tokenFile},
		"staging": {Address: "cp.staging:7443", CertFile: "/me.crt", KeyFile: "/me.key"},
	}}
	for _, tc := range []struct {
		name  string
		flags Flags
		env   map[string]string
		want  Connection
	}{
		{"the current context", Flags{}, nil,
			Connection{Context: "prod", Address: "cp.prod:7443", CAFile: "/etc/prod-ca.crt", Token: "fat_prod"}},
		{"the environment over the context", Flags{}, map[string]string{EnvAddress: "env:1", EnvToken: "fat_env", EnvCA: "/env.crt"},
			Connection{Context: "prod", Address: "env:1", CAFile: "/env.crt", Token: "fat_env"}},
		{"flags over the environment", Flags{Address: "flag:1", CAFile: "/flag.crt"}, map[string]string{EnvAddress: "env:1"},
			Connection{Context: "prod", Address: "flag:1", CAFile: "/flag.crt", Token: "fat_prod"}},
		{"FLOTILLA_CONTEXT picks a context", Flags{}, map[string]string{EnvContext: "staging"},
			Connection{Context: "staging", Address: "cp.staging:7443", CertFile: "/me.crt", KeyFile: "/me.key"}},
		{"--context over FLOTILLA_CONTEXT", Flags{Context: "prod"}, map[string]string{EnvContext: "staging"},
			Connection{Context: "prod", Address: "cp.prod:7443", CAFile: "/etc/prod-ca.crt", Token: "fat_prod"}},
		{"a token from the environment replaces the context's certificate", Flags{}, map[string]string{EnvContext: "staging", EnvToken: "fat_env"},
			Connection{Context: "staging", Address: "cp.staging:7443", Token: "fat_env"}},
	} {
		got, err := Resolve(tc.flags, file, envOf(tc.env))
		if err != nil || got != tc.want {
			t.Errorf("%s: Resolve = %+v, %v\nwant %+v", tc.name, got, err, tc.want)
		}
	}
	if got, err := Resolve(Flags{}, File{}, envOf(nil)); err != nil || got.Address != DefaultAddress {
		t.Errorf("no config: %+v, %v; want the default address", got, err)
	}
}

func TestResolveRefuses(t *testing.T) {
	file := File{Contexts: map[string]Context{"both": {Address: "x:1", TokenFile: "/t", CertFile: "/c", KeyFile: "/k"}}}
	for _, tc := range []struct {
		name  string
		flags Flags
		env   map[string]string
		want  string
	}{
		{"an unknown context", Flags{Context: "nope"}, nil, `context "nope": no such context (defined: both)`},
		{"a token and a certificate in flags", Flags{TokenFile: "/t", CertFile: "/c", KeyFile: "/k"}, nil, "use one"},
		{"a context with both", Flags{Context: "both"}, nil, "use one"},
		{"a certificate without its key", Flags{CertFile: "/c"}, nil, "give both"},
		{"a missing token file", Flags{TokenFile: "/does/not/exist"}, nil, "--token-file"},
	} {
		_, err := Resolve(tc.flags, file, envOf(tc.env))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Resolve error %v; want one containing %q", tc.name, err, tc.want)
		}
	}
}

func TestSaveLoadUse(t *testing.T) {
	path := filepath.Join(t.TempDir(), "flotilla", "config.yaml")
	f, err := Load(path)
	if err != nil || len(f.Contexts) != 0 {
		t.Fatalf("a missing file: %+v, %v", f, err)
	}
	f.Contexts = map[string]Context{"prod": {Address: "cp:7443"}, "dev": {Address: "127.0.0.1:7443"}}
	if err := f.Use("staging"); err == nil {
		t.Error("Use of an unknown context succeeded")
	}
	if err := f.Use("prod"); err != nil {
		t.Fatal(err)
	}
	if err := Save(path, f); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, %v; want 0600", st.Mode(), err)
	}
	back, err := Load(path)
	if err != nil || back.CurrentContext != "prod" || back.Contexts["dev"].Address != "127.0.0.1:7443" {
		t.Errorf("loaded %+v, %v", back, err)
	}
	if err := os.WriteFile(path, []byte("contexts:\n  x:\n    adress: typo\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err == nil || !strings.Contains(err.Error(), "adress") {
		t.Errorf("a misspelt key: %v; want an error naming it", err)
	}
}

func TestPath(t *testing.T) {
	for env, want := range map[[3]string]string{
		{"/c.yaml", "/x", "/h"}: "/c.yaml",
		{"", "/x", "/h"}:        "/x/flotilla/config.yaml",
		{"", "", "/h"}:          "/h/.config/flotilla/config.yaml",
	} {
		got, err := Path(envOf(map[string]string{EnvConfig: env[0], "XDG_CONFIG_HOME": env[1], "HOME": env[2]}))
		if err != nil || got != want {
			t.Errorf("Path(%v) = %q, %v; want %q", env, got, err, want)
		}
	}
}
