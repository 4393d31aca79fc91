package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"flotilla.dev/controlplane/internal/store"
)

func TestEmbeddedMigrationsLoad(t *testing.T) {
	ms, err := store.LoadMigrations(embeddedMigrations())
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) == 0 {
		t.Fatal("no embedded migrations")
	}
}

func TestOpenMigratesAndReopenIsIdempotent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "flotilla.db")
	want, err := store.LoadMigrations(embeddedMigrations())
	if err != nil {
		t.Fatal(err)
	}

	first := appliedMigrations(t, path)
	if len(first) != len(want) {
		t.Fatalf("after first Open: %d migrations recorded, want %d", len(first), len(want))
	}
	second := appliedMigrations(t, path)
	// Same versions with the same applied_at: nothing was re-applied.
	if fmt.Sprint(first) != fmt.Sprint(second) {
		t.Errorf("reopen changed schema_migrations:\nfirst:  %v\nsecond: %v", first, second)
	}
}

// appliedMigrations opens and closes the store at path and returns the
// "version applied_at" rows of schema_migrations.
func appliedMigrations(t *testing.T, path string) []string {
	t.Helper()
	s, err := Open(context.Background(), path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close()
	rows, err := s.read.Query("SELECT version, applied_at FROM schema_migrations ORDER BY version")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		var v int
		var at string
		if err := rows.Scan(&v, &at); err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%d %s", v, at))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return got
}

func TestOpenRefusesNewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "flotilla.db")
	s, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	known := len(mustLoadEmbedded(t))
	newer := known + 1
	// What a newer binary would have left behind.
	if _, err := s.write.Exec("INSERT INTO schema_migrations (version, applied_at) VALUES (?, 'later')", newer); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = Open(context.Background(), path)
	if err == nil {
		s.Close()
		t.Fatal("Open succeeded on a newer schema")
	}
	if !errors.Is(err, ErrSchemaTooNew) {
		t.Errorf("Open = %v, want ErrSchemaTooNew", err)
	}
	for _, v := range []int{newer, known} {
		if !strings.Contains(err.Error(), fmt.Sprintf("version %d", v)) {
			t.Errorf("Open = %q, want it to name version %d", err, v)
		}
	}
}

func mustLoadEmbedded(t *testing.T) []store.Migration {
	t.Helper()
	ms, err := store.LoadMigrations(embeddedMigrations())
	if err != nil {
		t.Fatal(err)
	}
	return ms
}

// openRawDB returns a writer pool on a fresh file, without any migration.
func openRawDB(t *testing.T) *sql.DB {
	t.Helper()
	path, err := prepareFile(filepath.Join(t.TempDir(), "raw.db"))
	if err != nil {
		t.Fatal(err)
	}
	db, err := openPool(path, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// migrateFS migrates db to the migrations in fsys, which must load.
func migrateFS(t *testing.T, db *sql.DB, fsys fstest.MapFS) error {
	t.Helper()
	ms, err := store.LoadMigrations(fsys)
	if err != nil {
		t.Fatal(err)
	}
	return migrate(context.Background(), db, ms)
}

func TestMigrateAppliesOnlyPendingMigrations(t *testing.T) {
	db := openRawDB(t)
	v1 := fstest.MapFS{"0001_a.sql": {Data: []byte("CREATE TABLE a (x INTEGER);")}}
	if err := migrateFS(t, db, v1); err != nil {
		t.Fatalf("migrate to 1: %v", err)
	}
	// Re-running 0001 would fail: table a already exists.
	v2 := fstest.MapFS{
		"0001_a.sql": v1["0001_a.sql"],
		"0002_b.sql": {Data: []byte("CREATE TABLE b (x INTEGER); INSERT INTO b VALUES (1);")},
	}
	if err := migrateFS(t, db, v2); err != nil {
		t.Fatalf("migrate to 2: %v", err)
	}
	if v := mustSchemaVersion(t, db); v != 2 {
		t.Errorf("schema version %d, want 2", v)
	}
	var n int
	if err := db.QueryRow("SELECT COUNT(*) FROM b").Scan(&n); err != nil || n != 1 {
		t.Errorf("table b: %d rows, err %v; want 1 row", n, err)
	}
}

func TestMigrateRollsBackFailedMigration(t *testing.T) {
	db := openRawDB(t)
	fsys := fstest.MapFS{
		"0001_a.sql": {Data: []byte("CREATE TABLE a (x INTEGER);")},
		"0002_b.sql": {Data: []byte("CREATE TABLE b (x INTEGER); INSERT INTO nowhere VALUES (1);")},
	}
	err := migrateFS(t, db, fsys)
	if err == nil || !strings.Contains(err.Error(), "0002_b.sql") {
		t.Fatalf("migrate = %v, want an error naming 0002_b.sql", err)
	}
	if v := mustSchemaVersion(t, db); v != 1 {
		t.Errorf("schema version %d, want 1", v)
	}
	var n int
	if err := db.QueryRow("SELECT COUNT(*) FROM sqlite_schema WHERE name = 'b'").Scan(&n); err != nil || n != 0 {
		t.Errorf("table b left behind (count %d, err %v)", n, err)
	}
}

func mustSchemaVersion(t *testing.T, db *sql.DB) int {
	t.Helper()
	v, err := schemaVersion(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
