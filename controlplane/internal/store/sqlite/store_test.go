package sqlite

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"flotilla.dev/controlplane/internal/store"
	"flotilla.dev/controlplane/internal/store/storetest"
)

// openTestStore opens a fresh store in a temporary directory and closes it
// when the test ends.
func openTestStore(tb testing.TB) *Store {
	tb.Helper()
	return openTestStoreAt(tb, filepath.Join(tb.TempDir(), "flotilla.db"))
}

// openTestStoreAt opens the store at path and closes it when the test ends.
func openTestStoreAt(tb testing.TB, path string) *Store {
	tb.Helper()
	s, err := Open(context.Background(), path)
	if err != nil {
		tb.Fatalf("Open(%q): %v", path, err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return s
}

// TestConformance runs the store's conformance suite on SQLite.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return openTestStore(t) })
}

// BenchmarkStore runs the store's benchmarks on SQLite (a file in a
// temporary directory, synchronous=FULL).
func BenchmarkStore(b *testing.B) {
	storetest.Benchmark(b, func(b *testing.B) store.Store { return openTestStore(b) })
}

// TestRegisterAgentLastUseRaceTwoStores races registrations for the last
// use of a token through two stores on the same file: two processes, as
// far as SQLite's locking can tell.
func TestRegisterAgentLastUseRaceTwoStores(t *testing.T) {
	path := filepath.Join(t.TempDir(), "flotilla.db")
	storetest.RaceLastUse(t, openTestStoreAt(t, path), openTestStoreAt(t, path))
}

// TestDeregistrationSurvivesReopen checks that a deregistration is on disk
// once DeregisterAgent returns.
func TestDeregistrationSurvivesReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "flotilla.db")
	ctx := context.Background()
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2025, 3, 1, 12, 0, 0, 123456789, time.UTC)
	tok := store.JoinToken{ID: "tok", Hash: []byte("hash"), MaxUses: 1, ExpiresAt: at.Add(time.Hour)}
	if err := s.CreateJoinToken(ctx, tok); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RegisterAgent(ctx, tok.Hash, at, func(store.JoinToken) (store.Agent, error) {
		return store.Agent{ID: "web-1", CertSerial: "02"}, nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DeregisterAgent(ctx, "web-1", at, "host decommissioned"); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	a, err := openTestStoreAt(t, path).GetAgent(ctx, "web-1")
	if err != nil || !a.DeregisteredAt.Equal(at) || a.CertSerial != "02" {
		t.Fatalf("after reopen: %+v, %v", a, err)
	}
}
