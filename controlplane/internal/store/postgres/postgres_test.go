package postgres

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"

	"flotilla.dev/controlplane/internal/store"
	"flotilla.dev/pkg/pgtest"
)

func TestOpenRejectsBadConfig(t *testing.T) {
	const secret = "s3cr3t-pw"
	tests := []struct {
		name     string
		cfg      Config
		wantText string
	}{
		{"empty dsn", Config{}, "dsn: required"},
		{"negative max conns", Config{DSN: "host=db", MaxConns: -1}, "max conns"},
		{"bad port in URL", Config{DSN: "postgres://flotilla:" + secret + "@db:notaport/flotilla"}, "dsn: "},
		{"bad port keyword", Config{DSN: "host=db port=notaport password=" + secret}, "invalid port"},
		{"unknown sslmode", Config{DSN: "host=db sslmode=sometimes password=" + secret}, "sslmode"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Open(context.Background(), tt.cfg)
			if err == nil {
				s.Close()
				t.Fatalf("Open succeeded, want an error")
			}
			if !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("Open = %q, want it to contain %q", err, tt.wantText)
			}
			t.Logf("Open: %v", err)
			if strings.Contains(err.Error(), secret) {
				t.Errorf("Open = %q: the error shows the password", err)
			}
			if errors.Is(err, store.ErrUnavailable) {
				t.Errorf("Open = %v: a bad DSN is not an outage", err)
			}
		})
	}
}

func TestOpenUnreachableIsUnavailable(t *testing.T) {
	port, err := pgtest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	dsn := fmt.Sprintf("host=127.0.0.1 port=%d dbname=flotilla user=flotilla password=hunter2 connect_timeout=2", port)
	s, err := Open(context.Background(), Config{DSN: dsn})
	if err == nil {
		s.Close()
		t.Fatal("Open of a port nothing listens on succeeded")
	}
	if !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Open = %v, want ErrUnavailable", err)
	}
	for _, want := range []string{"127.0.0.1", fmt.Sprint(port), "database=flotilla"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Open = %q, want it to name %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Errorf("Open = %q: the error shows the password", err)
	}
}

// TestOpenUnknownDatabaseIsNotUnavailable: a database that does not exist
// is a configuration mistake, not an outage to wait out.
func TestOpenUnknownDatabaseIsNotUnavailable(t *testing.T) {
	p := cluster.Get(t)
	s, err := Open(context.Background(), Config{DSN: p.AdminConninfo("no_such_database")})
	if err == nil {
		s.Close()
		t.Fatal("Open of a missing database succeeded")
	}
	if errors.Is(err, store.ErrUnavailable) || !strings.Contains(err.Error(), "no_such_database") {
		t.Errorf("Open = %v, want a plain error naming the database", err)
	}
}

func TestOpenRefusesNewerSchema(t *testing.T) {
	dsn := freshDSN(t)
	s := openTestStoreAt(t, dsn)
	ms, err := embeddedMigrations()
	if err != nil {
		t.Fatal(err)
	}
	known, newer := len(ms), len(ms)+1
	// What a newer binary would have left behind.
	if _, err := s.pool.Exec(context.Background(), `INSERT INTO schema_migrations (version, applied_at) VALUES ($1, now())`, newer); err != nil {
		t.Fatal(err)
	}
	again, err := Open(context.Background(), Config{DSN: dsn})
	if err == nil {
		again.Close()
		t.Fatal("Open succeeded on a newer schema")
	}
	if !errors.Is(err, store.ErrSchemaTooNew) {
		t.Errorf("Open = %v, want ErrSchemaTooNew", err)
	}
	for _, v := range []int{newer, known} {
		if !strings.Contains(err.Error(), fmt.Sprintf("version %d", v)) {
			t.Errorf("Open = %q, want it to name version %d", err, v)
		}
	}
}

// TestConcurrentOpenMigratesOnce starts several control planes on one
// empty database at once: the advisory lock lets one migrate, the others
// find the schema current.
func TestConcurrentOpenMigratesOnce(t *testing.T) {
	dsn, db := freshDatabase(t)
	const openers = 4
	errs := make([]error, openers)
	var wg sync.WaitGroup
	for i := range openers {
		wg.Go(func() {
			s, err := Open(context.Background(), Config{DSN: dsn, MaxConns: 2})
			if err == nil {
				s.Close()
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Open %d: %v", i, err)
		}
	}
	ms, _ := embeddedMigrations()
	p := cluster.Get(t)
	if n := p.QueryInt(t, db, "SELECT count(*) FROM schema_migrations"); n != int64(len(ms)) {
		t.Errorf("%d versions recorded, want %d", n, len(ms))
	}
}

// TestMigrationsMatchSQLite keeps the version numbers and names of both
// drivers' migrations the same: a version means one schema.
func TestMigrationsMatchSQLite(t *testing.T) {
	ms, err := embeddedMigrations()
	if err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir("../sqlite/migrations")
	if err != nil {
		t.Fatal(err)
	}
	var sqlite, postgres []string
	for _, e := range entries {
		sqlite = append(sqlite, e.Name())
	}
	for _, m := range ms {
		postgres = append(postgres, m.Name)
	}
	if fmt.Sprint(sqlite) != fmt.Sprint(postgres) {
		t.Errorf("migrations differ:\n sqlite:   %v\n postgres: %v", sqlite, postgres)
	}
}

// TestTerminatedConnectionIsUnavailable ends the store's sessions the way a
// failover or an administrator does: the next call fails with
// ErrUnavailable, and the one after it works on a new connection.
func TestTerminatedConnectionIsUnavailable(t *testing.T) {
	dsn, db := freshDatabase(t)
	s, err := Open(context.Background(), Config{DSN: dsn, MaxConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	if err := s.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	cluster.Get(t).Exec(t, "postgres",
		"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '"+db+"' AND pid <> pg_backend_pid()")
	_, err = s.GetAgent(ctx, "web-1")
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("GetAgent on a terminated session = %v, want ErrUnavailable", err)
	}
	if _, err := s.GetAgent(ctx, "web-1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetAgent after reconnecting = %v, want ErrNotFound", err)
	}
	// A request error is not an outage.
	err = s.CreateHostCommands(ctx, []store.HostCommand{{ID: "x", AgentID: "a", Kind: "pull"}}) // spec NULL: NOT NULL violated
	if err == nil || errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("CreateHostCommands without a spec = %v, want a request error", err)
	}
}

// TestStoppedServerIsUnavailable stops PostgreSQL under an open store.
func TestStoppedServerIsUnavailable(t *testing.T) {
	p := pgtest.Start(t)
	s := openTestStoreAt(t, p.AdminConninfo("postgres"))
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := s.Ping(context.Background()); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Ping with the server stopped = %v, want ErrUnavailable", err)
	}
	if _, err := s.ListAgents(context.Background()); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("ListAgents with the server stopped = %v, want ErrUnavailable", err)
	}
}

// TestPoolConfigForcesPrimary: whatever the DSN asks for, connections are
// validated as read-write (a primary), and the pool size is applied.
func TestPoolConfigForcesPrimary(t *testing.T) {
	for _, dsn := range []string{
		"host=db dbname=flotilla",
		"host=db dbname=flotilla target_session_attrs=any",
		"postgres://flotilla@db1,db2/flotilla?target_session_attrs=read-only",
	} {
		pc, err := poolConfig(Config{DSN: dsn, MaxConns: 7})
		if err != nil {
			t.Fatalf("poolConfig(%q): %v", dsn, err)
		}
		if pc.ConnConfig.ValidateConnect == nil {
			t.Errorf("%q: no read-write validation", dsn)
		}
		if pc.MaxConns != 7 {
			t.Errorf("%q: MaxConns = %d, want 7", dsn, pc.MaxConns)
		}
	}
	if pc, err := poolConfig(Config{DSN: "host=db"}); err != nil || pc.MaxConns != DefaultMaxConns {
		t.Errorf("default pool size = %v, %v; want %d", pc.MaxConns, err, DefaultMaxConns)
	}
}
