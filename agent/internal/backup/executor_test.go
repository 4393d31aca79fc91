package backup

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"flotilla.dev/agent/internal/executor"
	flotillav1 "flotilla.dev/gen/flotilla/v1"
)

// fakeBinary creates an executable file that New accepts as pg_dump or
// pg_restore; the tests using it never run it.
func fakeBinary(t *testing.T, dir, name string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, nil, 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func newTestExecutor(t *testing.T, databases map[string]Database) *Executor {
	t.Helper()
	bin := t.TempDir()
	e, err := New(Config{
		PgDump:    fakeBinary(t, bin, "pg_dump"),
		PgRestore: fakeBinary(t, bin, "pg_restore"),
		Databases: databases,
	}, t.TempDir(), zaptest.NewLogger(t))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return e
}

func backupSpec(database string) *flotillav1.CommandSpec {
	return &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Backup{Backup: &flotillav1.BackupCommand{Database: database}}}
}

func TestValidate(t *testing.T) {
	e := newTestExecutor(t, map[string]Database{"app": {}, "app-2": {}})
	tests := []struct {
		name       string
		spec       *flotillav1.CommandSpec
		wantReason string // empty means accepted
	}{
		{"configured", backupSpec("app"), ""},
		{"configured with a dash", backupSpec("app-2"), ""},
		{"not configured", backupSpec("billing"), "database billing is not in backup.databases"},
		{"empty name", backupSpec(""), "backup.database is required"},
		{"shell metacharacters", backupSpec("app; rm -rf /"), "backup.database: "},
		{"command substitution", backupSpec("$(id)"), "backup.database: "},
		{"path traversal", backupSpec("../app"), "backup.database: "},
		{"too long", backupSpec(strings.Repeat("a", 64)), "backup.database: "},
		{"another kind", &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Pull{Pull: &flotillav1.PullCommand{Image: "x"}}},
			"the backup executor runs only backup, base_backup, prune, restore and drill commands"},
		{"no kind", &flotillav1.CommandSpec{}, "the backup executor runs only backup, base_backup, prune, restore and drill commands"},
		{"nil spec", nil, "the backup executor runs only backup, base_backup, prune, restore and drill commands"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := e.Validate(tt.spec)
			if tt.wantReason == "" {
				if err != nil {
					t.Fatalf("Validate = %v, want nil", err)
				}
				return
			}
			if !executor.IsRejection(err) || !strings.Contains(err.Error(), tt.wantReason) {
				t.Fatalf("Validate = %v, want a rejection containing %q", err, tt.wantReason)
			}
			// Execute checks the same rules before it touches anything.
			if _, err := e.Execute(t.Context(), tt.spec, nil); !executor.IsRejection(err) {
				t.Errorf("Execute = %v, want a rejection", err)
			}
		})
	}
}

func TestNewBackupDirectory(t *testing.T) {
	state := t.TempDir()
	dir := filepath.Join(state, "backups")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	files := map[string]bool{ // name → kept by New
		"app-20250101T000000Z.dump.partial": false,
		"app-20250101T000000Z.json.tmp":     false,
		"app-20240101T000000Z.dump":         true,
		"app-20240101T000000Z.json":         true,
		"notes.txt":                         true,
	}
	for name := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	e, err := New(Config{}, state, zap.NewNop())
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if e.Directory() != dir {
		t.Errorf("Directory() = %s, want %s", e.Directory(), dir)
	}
	for name, kept := range files {
		if _, err := os.Stat(filepath.Join(dir, name)); (err == nil) != kept {
			t.Errorf("%s: kept = %v, want %v", name, err == nil, kept)
		}
	}
}

func TestNewCreatesPrivateDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "backups")
	e, err := New(Config{Directory: dir}, "", zap.NewNop())
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	info, err := os.Stat(e.Directory())
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o700 {
		t.Errorf("mode = %v, want 0700", info.Mode().Perm())
	}
}

func TestNewErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"invalid config", Config{Databases: map[string]Database{"a b": {}}}, `backup.databases["a b"]`},
		{"missing pg_dump", Config{PgDump: "/nonexistent/pg_dump", Databases: map[string]Database{"app": {}}}, "backup.pg_dump"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg, t.TempDir(), zap.NewNop())
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}
