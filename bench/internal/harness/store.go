package harness

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"flotilla.dev/bench/internal/procfs"
	"flotilla.dev/pkg/pgtest"
)

// Store drivers the control planes of an Env can run on.
const (
	StoreSQLite   = "sqlite"
	StorePostgres = "postgres"
)

// CheckStore returns an error naming the flag when store is not a driver
// the harness can run.
func CheckStore(store string) error {
	switch store {
	case StoreSQLite, StorePostgres:
		return nil
	}
	return fmt.Errorf("-store: %q is not one of %s, %s", store, StoreSQLite, StorePostgres)
}

// postgresSettings are the throwaway cluster's settings, given after (so
// overriding) the test fixture's: fsync on and shared_buffers at the
// server's default, so that commits cost what they cost on a production
// server, less the disk (the cluster is on the same tmpfs as the SQLite
// file of the other driver).
var postgresSettings = []string{"fsync=on", "shared_buffers=128MB", "max_connections=100"}

// storeDB is the PostgreSQL database and role the control plane uses.
const storeDB = "flotilla"

// postgresStore is a throwaway PostgreSQL cluster with the control
// plane's database, role and password file.
type postgresStore struct {
	pg           *pgtest.Postgres
	dsn          string
	passwordFile string
}

// StoreDescription says which store control planes use and how it runs,
// for the figures' notes; root is the temporary root (see TempRoot).
func StoreDescription(store, root string) string {
	if store == StorePostgres {
		return fmt.Sprintf("store postgres: PostgreSQL %s cluster in %s, %s, TCP on 127.0.0.1, control-plane pool at its default",
			postgresVersion(), TempRoot(root), strings.Join(postgresSettings, " "))
	}
	return fmt.Sprintf("store sqlite: file in %s", TempRoot(root))
}

// postgresVersion is the major version of the newest installed server,
// the one pgtest runs.
func postgresVersion() string {
	bin := pgtest.NewestBinary("postgres")
	if bin == "" {
		return "(not installed)"
	}
	return filepath.Base(filepath.Dir(filepath.Dir(bin)))
}

// postgres starts the Env's PostgreSQL cluster on first use; it lives
// until Close, across control-plane restarts.
func (e *Env) postgres(ctx context.Context) (*postgresStore, error) {
	if e.pg != nil {
		return e.pg, nil
	}
	// The cluster's directory is not inside e.Dir, which is private to
	// the user running the benchmark (root), and the server runs as the
	// postgres OS user; it is made next to it, on the same filesystem.
	pg, err := pgtest.Launch(pgtest.Options{Settings: postgresSettings, Parent: e.storeRoot})
	if err != nil {
		return nil, fmt.Errorf("-store postgres: %w", err)
	}
	s := &postgresStore{pg: pg, passwordFile: filepath.Join(e.Dir, "postgres.password")}
	if err := s.createDatabase(ctx); err != nil {
		return nil, errors.Join(err, pg.Stop())
	}
	e.Logf("PostgreSQL %s on 127.0.0.1:%d, %s", postgresVersion(), pg.Port, strings.Join(postgresSettings, " "))
	e.pg = s
	return s, nil
}

// createDatabase creates the control plane's role, with a random password
// written to the password file, and its database.
func (s *postgresStore) createDatabase(ctx context.Context) error {
	secret := make([]byte, 16)
	if _, err := rand.Read(secret); err != nil {
		return err
	}
	password := hex.EncodeToString(secret)
	if err := os.WriteFile(s.passwordFile, []byte(password+"\n"), 0o600); err != nil {
		return fmt.Errorf("postgres password file: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := s.pg.Dial(ctx, "postgres")
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	defer conn.Close(context.Background())
	for _, stmt := range []string{
		fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD '%s'", storeDB, password),
		fmt.Sprintf("CREATE DATABASE %s OWNER %s", storeDB, storeDB),
	} {
		if _, err := conn.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("postgres: create the control plane's role and database: %w", err)
		}
	}
	s.dsn = fmt.Sprintf("host=127.0.0.1 port=%d user=%s dbname=%s sslmode=disable", s.pg.Port, storeDB, storeDB)
	return nil
}

// storeYAML is the control plane's store section.
func (s *postgresStore) storeYAML() string {
	return fmt.Sprintf("store:\n  driver: postgres\n  dsn: %q\n  password_file: %q\n", s.dsn, s.passwordFile)
}

// closeStore stops the PostgreSQL cluster, if one was started.
func (e *Env) closeStore() {
	if e.pg == nil {
		return
	}
	if err := e.pg.pg.Stop(); err != nil {
		fmt.Fprintf(e.Out, "  stopping PostgreSQL: %v\n", err)
	}
	e.pg = nil
}

// StoreSample reads the CPU the PostgreSQL server has used (the postmaster
// and its processes: see procfs.TreeCPU), which on SQLite is part of the
// control plane's own; ok is false when the Env runs no server.
func (e *Env) StoreSample() (s procfs.Sample, ok bool, err error) {
	if e.pg == nil {
		return s, false, nil
	}
	s, err = procfs.TreeCPU(e.pg.pg.Pid())
	if err != nil {
		return s, false, fmt.Errorf("PostgreSQL server CPU: %w", err)
	}
	return s, true, nil
}
