package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"flotilla.dev/controlplane/internal/pki"
)

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// postgresDataDir is a data directory with a CA, as a control plane on
// PostgreSQL keeps it, and a password file.
func postgresDataDir(t *testing.T) (dir, pwFile string) {
	t.Helper()
	dir = filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := pki.LoadOrCreate(pki.FilesConfig{Dir: dir, ServerHosts: []string{"localhost"}}); err != nil {
		t.Fatal(err)
	}
	pwFile = filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte("hunter2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir, pwFile
}

// TestBackupOnPostgres: the archive holds the CA, and what is printed
// says how to dump the database, with the DSN but never the password.
func TestBackupOnPostgres(t *testing.T) {
	dir, pwFile := postgresDataDir(t)
	out := filepath.Join(t.TempDir(), "cp.backup")
	var stdout bytes.Buffer
	err := runBackup(context.Background(), []string{"-data-dir", dir, "-store-driver", "postgres", "--out", out},
		envOf(map[string]string{"FLOTILLA_STORE_DSN": "postgres://flotilla@db:5432/flotilla", "FLOTILLA_STORE_PASSWORD_FILE": pwFile}),
		&stdout, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	text := stdout.String()
	for _, want := range []string{"ca.key", "pg_dump --format=custom", "'postgres://flotilla@db:5432/flotilla'"} {
		if !strings.Contains(text, want) {
			t.Errorf("backup printed:\n%s\nwant it to mention %q", text, want)
		}
	}
	if strings.Contains(text, "hunter2") {
		t.Errorf("backup printed the password:\n%s", text)
	}
	stdout.Reset()
	restored := filepath.Join(t.TempDir(), "restored")
	if err := runRestore(context.Background(), []string{"--from", out, "-data-dir", restored}, envOf(nil), &stdout, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stdout.String(), "pg_restore") {
		t.Errorf("restore of a PostgreSQL archive printed:\n%s\nwant the pg_restore step", stdout.String())
	}
}

func TestSubcommandErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		run  func(context.Context, []string, func(string) string, io.Writer, io.Writer) error
		args []string
		want string
	}{
		{"backup without --out", runBackup, []string{"-data-dir", dir}, "backup: --out: required"},
		{"backup with a bad setting", runBackup, []string{"-data-dir", dir, "-store-driver", "mysql", "--out", "x"}, "store.driver"},
		{"backup of a missing store", runBackup, []string{"-data-dir", dir, "--out", filepath.Join(dir, "x")}, "backup: store:"},
		{"restore without --from", runRestore, []string{"-data-dir", dir}, "restore: --from: required"},
		{"restore of a missing archive", runRestore, []string{"-data-dir", dir, "--from", filepath.Join(dir, "none")}, "restore: --from:"},
		{"restore of what is not an archive", runRestore, []string{"-data-dir", filepath.Join(dir, "d"), "--from", "backup_test.go"}, "is not a control-plane backup"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.run(context.Background(), tt.args, envOf(nil), io.Discard, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}
