package statedir

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestEnsureCreatesPrivateDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "state")
	if err := Ensure(dir); err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if perm := info.Mode().Perm(); perm != DirMode {
		t.Errorf("created with mode %04o, want %04o", perm, DirMode)
	}
}

func TestEnsure(t *testing.T) {
	tests := []struct {
		name    string
		dirMode os.FileMode
		files   map[string]os.FileMode
		subdirs map[string]os.FileMode
		wantErr []string // substrings; none means accepted
	}{
		{
			name:    "private dir and files",
			dirMode: 0o700,
			files:   map[string]os.FileMode{"agent.json": 0o600, "agent-1.key": 0o600, "agent-1.crt": 0o600, "journal.db": 0o600},
		},
		{
			name:    "stricter modes are fine",
			dirMode: 0o500,
			files:   map[string]os.FileMode{"agent-1.key": 0o400},
		},
		{
			name:    "a subdirectory is left to its owner",
			dirMode: 0o700,
			subdirs: map[string]os.FileMode{"backups": 0o755},
		},
		{
			name:    "world-readable dir",
			dirMode: 0o755,
			wantErr: []string{"has mode 0755", "fix it with: chmod 700 "},
		},
		{
			name:    "group-accessible dir",
			dirMode: 0o710,
			wantErr: []string{"has mode 0710", "chmod 700 "},
		},
		{
			name:    "world-readable key",
			dirMode: 0o700,
			files:   map[string]os.FileMode{"agent-1.key": 0o644},
			wantErr: []string{"agent-1.key has mode 0644", "chmod 600 ", "agent-1.key", "treat it as compromised"},
		},
		{
			name:    "group-readable certificate",
			dirMode: 0o700,
			files:   map[string]os.FileMode{"agent-1.crt": 0o640},
			wantErr: []string{"agent-1.crt has mode 0640", "chmod 600 "},
		},
		{
			name:    "world-writable journal",
			dirMode: 0o700,
			files:   map[string]os.FileMode{"journal.db": 0o602},
			wantErr: []string{"journal.db has mode 0602", "chmod 600 "},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "state")
			mkdir(t, dir, 0o700)
			for name, mode := range tt.files {
				writeFile(t, filepath.Join(dir, name), mode)
			}
			for name, mode := range tt.subdirs {
				mkdir(t, filepath.Join(dir, name), mode)
			}
			chmod(t, dir, tt.dirMode)
			t.Cleanup(func() { _ = os.Chmod(dir, 0o700) })

			err := Ensure(dir)
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
			// The agent does not fix modes behind the operator's back.
			if info, _ := os.Stat(dir); info.Mode().Perm() != tt.dirMode {
				t.Errorf("directory mode changed to %04o", info.Mode().Perm())
			}
			for name, mode := range tt.files {
				if info, _ := os.Stat(filepath.Join(dir, name)); info.Mode().Perm() != mode {
					t.Errorf("%s mode changed to %04o", name, info.Mode().Perm())
				}
			}
		})
	}
}

func TestEnsureRejectsAFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "state")
	writeFile(t, file, 0o600)
	if err := Ensure(file); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Fatalf("got %v, want an error saying it is not a directory", err)
	}
}

func TestCheckSecretFile(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		mode    os.FileMode // 0: no file
		wantErr string
	}{
		{"private", 0o600, ""},
		{"read-only for the owner", 0o400, ""},
		{"missing", 0, ""},
		{"world-readable", 0o644, "join token file %s has mode 0644"},
		{"group-readable", 0o640, "join token file %s has mode 0640"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "-"))
			if tt.mode != 0 {
				writeFile(t, path, tt.mode)
			}
			err := CheckSecretFile(path, "join token file")
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			want := strings.ReplaceAll(tt.wantErr, "%s", path)
			if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "chmod 600 "+path) {
				t.Fatalf("got %v, want %q and the chmod to run", err, want)
			}
		})
	}
}

func TestCheckSecretFileFollowsSymlinks(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "..data-token")
	writeFile(t, target, 0o644)
	link := filepath.Join(dir, "token")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if err := CheckSecretFile(link, "join token file"); err == nil {
		t.Fatal("a symlink to a world-readable token passed")
	}
}

func TestShellQuote(t *testing.T) {
	tests := map[string]string{
		"/var/lib/flotilla-agent/agent-1.key": "/var/lib/flotilla-agent/agent-1.key",
		"/tmp/my state/agent.key":             "'/tmp/my state/agent.key'",
		"/tmp/it's":                           `'/tmp/it'\''s'`,
		"/tmp/$(id)":                          "'/tmp/$(id)'",
	}
	for in, want := range tests {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %s, want %s", in, got, want)
		}
	}
}

func mkdir(t *testing.T, dir string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	chmod(t, dir, mode)
}

func writeFile(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	chmod(t, path, mode)
}

func chmod(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}
