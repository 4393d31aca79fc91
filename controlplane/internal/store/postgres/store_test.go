package postgres

import (
	"context"
	"testing"

	"flotilla.dev/controlplane/internal/store"
	"flotilla.dev/controlplane/internal/store/storetest"
	"flotilla.dev/pkg/pgtest"
)

// freshDSN creates an empty database on the shared cluster for tb and
// returns its DSN.
func freshDSN(tb testing.TB) string {
	tb.Helper()
	dsn, _ := freshDatabase(tb)
	return dsn
}

// freshDatabase creates an empty database on the shared cluster for tb and
// returns its DSN and name.
func freshDatabase(tb testing.TB) (dsn, name string) {
	tb.Helper()
	p := cluster.Get(tb)
	name = p.CreateDatabase(tb)
	return p.AdminConninfo(name), name
}

// openTestStore opens a store on a fresh database, closed when tb ends.
func openTestStore(tb testing.TB) *Store {
	tb.Helper()
	return openTestStoreAt(tb, freshDSN(tb))
}

// openTestStoreAt opens a store on dsn, closed when tb ends.
func openTestStoreAt(tb testing.TB, dsn string) *Store {
	tb.Helper()
	s, err := Open(context.Background(), Config{DSN: dsn})
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return s
}

// TestConformance runs the store's conformance suite on PostgreSQL.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return openTestStore(t) })
}

// BenchmarkStore runs the store's benchmarks on PostgreSQL: a local server
// of its own over its unix socket, with fsync on (the test cluster runs
// without it) so that commits cost what they cost SQLite at
// synchronous=FULL, and PostgreSQL's default buffer pool.
func BenchmarkStore(b *testing.B) {
	p := pgtest.StartWith(b, pgtest.Options{Settings: []string{"fsync=on", "shared_buffers=128MB"}})
	if got := p.QueryString(b, "postgres", "SHOW fsync"); got != "on" {
		b.Fatalf("fsync = %q on the benchmark cluster, want on", got)
	}
	storetest.Benchmark(b, func(b *testing.B) store.Store {
		return openTestStoreAt(b, p.AdminConninfo(p.CreateDatabase(b)))
	})
}

// TestRegisterAgentLastUseRaceTwoStores races registrations for the last
// use of a token through two stores on one database: two control planes.
func TestRegisterAgentLastUseRaceTwoStores(t *testing.T) {
	dsn := freshDSN(t)
	storetest.RaceLastUse(t, openTestStoreAt(t, dsn), openTestStoreAt(t, dsn))
}
