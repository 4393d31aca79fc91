package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestOpenCreatesPrivateFiles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "flotilla.db")
	openTestStoreAt(t, path)

	// The -wal and -shm files hold the same data, so they must be private too.
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		info, err := os.Stat(p)
		if err != nil {
			t.Fatalf("stat: %v", err)
		}
		if mode := info.Mode().Perm(); mode != 0o600 {
			t.Errorf("%s: mode %v, want 0600", filepath.Base(p), mode)
		}
	}
}

func TestOpenRejectsBadPaths(t *testing.T) {
	dir := t.TempDir()
	notDir := filepath.Join(dir, "file")
	if err := os.WriteFile(notDir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		path     string
		wantIs   error  // when set, errors.Is(err, wantIs) must hold
		wantText string // the error must contain this
	}{
		{"empty", "", nil, "empty database path"},
		{"question mark", filepath.Join(dir, "a?b.db"), nil, "must not contain '?'"},
		{"missing directory", filepath.Join(dir, "missing", "flotilla.db"), fs.ErrNotExist, "database directory"},
		{"parent is a file", filepath.Join(notDir, "flotilla.db"), nil, "not a directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Open(context.Background(), tt.path)
			if err == nil {
				s.Close()
				t.Fatalf("Open(%q) succeeded, want an error", tt.path)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("Open(%q) = %v, want errors.Is %v", tt.path, err, tt.wantIs)
			}
			if !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("Open(%q) = %q, want it to contain %q", tt.path, err, tt.wantText)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open created the missing directory (stat: %v)", err)
	}
}

// TestPragmasOnEveryConnection holds several connections of each pool at
// once, so that each is a distinct SQLite connection, and checks the pragmas
// on every one.
func TestPragmasOnEveryConnection(t *testing.T) {
	s := openTestStore(t)
	want := map[string]string{
		"journal_mode": "wal",
		"busy_timeout": "5000",
		"foreign_keys": "1",
		"synchronous":  "2", // FULL
	}
	pools := []struct {
		name      string
		db        *sql.DB
		conns     int
		queryOnly string
	}{
		{"write", s.write, 1, "0"},
		{"read", s.read, 4, "1"},
	}
	ctx := context.Background()
	for _, p := range pools {
		for i := range p.conns {
			conn, err := p.db.Conn(ctx)
			if err != nil {
				t.Fatalf("%s pool: conn %d: %v", p.name, i, err)
			}
			defer conn.Close()
			for pragma, v := range want {
				checkPragma(t, conn, p.name, pragma, v)
			}
			checkPragma(t, conn, p.name, "query_only", p.queryOnly)
		}
	}
}

func checkPragma(t *testing.T, conn *sql.Conn, pool, pragma, want string) {
	t.Helper()
	var got string
	if err := conn.QueryRowContext(context.Background(), "PRAGMA "+pragma).Scan(&got); err != nil {
		t.Fatalf("%s pool: PRAGMA %s: %v", pool, pragma, err)
	}
	if !strings.EqualFold(got, want) {
		t.Errorf("%s pool: PRAGMA %s = %q, want %q", pool, pragma, got, want)
	}
}

func TestReadPoolIsReadOnly(t *testing.T) {
	s := openTestStore(t)
	_, err := s.read.Exec("INSERT INTO schema_migrations (version, applied_at) VALUES (999, 'x')")
	if err == nil {
		t.Fatal("write through the read pool succeeded")
	}
}

func TestPingAndClose(t *testing.T) {
	s, err := Open(context.Background(), filepath.Join(t.TempDir(), "flotilla.db"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Ping(context.Background()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Ping(context.Background()); err == nil {
		t.Fatal("Ping after Close succeeded")
	}
}
