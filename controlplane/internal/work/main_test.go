package work

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"flotilla.dev/controlplane/internal/store"
	"flotilla.dev/controlplane/internal/store/postgres"
	"flotilla.dev/controlplane/internal/store/sqlite"
	"flotilla.dev/pkg/pgtest"
)

// cluster is the PostgreSQL server of this package's tests: each test gets
// a fresh database on it.
var cluster pgtest.Shared

func TestMain(m *testing.M) {
	code := m.Run()
	if err := cluster.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		code = 1
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// driver opens two stores on one fresh database: two replicas' views of
// it (SQLite: the same store twice, one process).
type driver struct {
	name string
	open func(t *testing.T) (a, b store.Store)
}

var drivers = []driver{
	{"sqlite", func(t *testing.T) (store.Store, store.Store) {
		st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "flotilla.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.Close() })
		return st, st
	}},
	{"postgres", func(t *testing.T) (store.Store, store.Store) {
		p := cluster.Get(t)
		dsn := p.AdminConninfo(p.CreateDatabase(t))
		open := func() store.Store {
			st, err := postgres.Open(context.Background(), postgres.Config{DSN: dsn})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = st.Close() })
			return st
		}
		return open(), open()
	}},
}

// forEachDriver runs test on both store drivers.
func forEachDriver(t *testing.T, test func(t *testing.T, a, b store.Store)) {
	for _, d := range drivers {
		t.Run(d.name, func(t *testing.T) {
			a, b := d.open(t)
			test(t, a, b)
		})
	}
}

// pausable is a store whose lease requests can be held up, as when the
// process is paused or cut off from the database.
type pausable struct {
	store.Store

	mu     sync.Mutex
	paused chan struct{} // closed on resume; nil while running
}

// wait holds a request up while the store is paused.
func (p *pausable) wait(ctx context.Context) error {
	p.mu.Lock()
	paused := p.paused
	p.mu.Unlock()
	if paused == nil {
		return nil
	}
	select {
	case <-paused:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (p *pausable) AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (store.Lease, error) {
	if err := p.wait(ctx); err != nil {
		return store.Lease{}, err
	}
	return p.Store.AcquireLease(ctx, name, holder, ttl)
}

func (p *pausable) RenewLease(ctx context.Context, name, holder string, token int64, ttl time.Duration) (store.Lease, error) {
	if err := p.wait(ctx); err != nil {
		return store.Lease{}, err
	}
	return p.Store.RenewLease(ctx, name, holder, token, ttl)
}

func (p *pausable) pause() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.paused = make(chan struct{})
}

func (p *pausable) resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.paused != nil {
		close(p.paused)
		p.paused = nil
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
