package servertest

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"flotilla.dev/controlplane/internal/config"
	"flotilla.dev/controlplane/internal/server"
	"flotilla.dev/controlplane/internal/store"
	"flotilla.dev/controlplane/internal/store/postgres"
	"flotilla.dev/pkg/pgtest"
)

// StoreEnv selects the driver of the control planes started without
// WithStore: "sqlite" (the default when it is unset) or "postgres", a fresh
// database per data directory on one throwaway PostgreSQL cluster per test
// binary (pkg/pgtest; skipped when PostgreSQL is missing, a failure under
// FLOTILLA_E2E=1). The package's TestMain must be Main, which stops it.
const StoreEnv = "FLOTILLA_TEST_STORE"

// Driver is the store driver StoreEnv selects: config.DriverSQLite or
// config.DriverPostgres. Any other value panics, naming the variable: a
// typo must not run the suite on SQLite while claiming PostgreSQL.
func Driver() string {
	switch v := os.Getenv(StoreEnv); v {
	case "", config.DriverSQLite:
		return config.DriverSQLite
	case config.DriverPostgres:
		return config.DriverPostgres
	default:
		panic(fmt.Sprintf("%s=%q: want %s or %s", StoreEnv, v, config.DriverSQLite, config.DriverPostgres))
	}
}

// SQLiteOnly skips t when the suite runs on another driver: the test checks
// something only the SQLite store has (the data directory's lock, the
// database file), and why says what.
func SQLiteOnly(t testing.TB, why string) {
	t.Helper()
	if d := Driver(); d != config.DriverSQLite {
		t.Skipf("SQLite only (%s), and %s=%s", why, StoreEnv, d)
	}
}

// Main is the TestMain of a package that starts control planes: it runs
// the tests, stops the shared PostgreSQL cluster if one was started, and
// fails the run if a test left a goroutine behind (goleak, with opts).
func Main(m *testing.M, opts ...goleak.Option) {
	if err := checkDriver(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	code := m.Run()
	if err := cluster.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "stopping the PostgreSQL test cluster:", err)
		code = 1
	}
	if code == 0 {
		if err := goleak.Find(opts...); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// checkDriver turns Driver's panic on a bad StoreEnv into an error.
func checkDriver() (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
	}()
	Driver()
	return nil
}

// cluster is the PostgreSQL server of this test binary's control planes.
// Each control plane with WithStore spends ~10 connections at most; the
// fixture's default of 100 would cap a package's parallel tests too low.
var cluster = pgtest.Shared{Options: pgtest.Options{Settings: []string{"max_connections=400"}}}

// databases maps a data directory to the database of its control planes,
// so that every control plane started on one data directory (Restart, or a
// new Start with WithDataDir) finds the state of the last, as it would in
// the directory's SQLite file.
var databases struct {
	sync.Mutex
	byDir map[string]string
}

// postgresStore creates (or finds) the database of dataDir on the shared
// cluster, dropped when t ends, and returns the opener of a PostgreSQL
// store on it and the configuration that names it: store.driver postgres,
// so that the control plane takes its lease as in production.
func postgresStore(t testing.TB, dataDir string) (server.StoreOpener, func(*config.Config)) {
	t.Helper()
	p := cluster.Get(t)
	databases.Lock()
	name, ok := databases.byDir[dataDir]
	databases.Unlock()
	if !ok {
		name = p.CreateDatabase(t)
		databases.Lock()
		if databases.byDir == nil {
			databases.byDir = make(map[string]string)
		}
		databases.byDir[dataDir] = name
		databases.Unlock()
		t.Cleanup(func() {
			databases.Lock()
			delete(databases.byDir, dataDir)
			databases.Unlock()
		})
	}
	dsn := p.AdminConninfo(name)
	adjust := func(c *config.Config) {
		c.Store.Driver = config.DriverPostgres
		c.Store.DSN = dsn
	}
	return Postgres, adjust
}

// Postgres opens the PostgreSQL store of the configuration (store.dsn),
// as the control plane does with store.driver postgres.
func Postgres(ctx context.Context, cfg config.Config) (store.Store, error) {
	return postgres.Open(ctx, postgres.Config{DSN: cfg.Store.DSN, MaxConns: cfg.Store.MaxConns})
}
