package servertest

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"flotilla.dev/controlplane/internal/auth"
	"flotilla.dev/controlplane/internal/config"
	"flotilla.dev/controlplane/internal/fsutil"
	"flotilla.dev/controlplane/internal/pki"
)

// Replicas is a set of control planes on one PostgreSQL database sharing
// one CA, as an operator runs several replicas: each has a data directory
// of its own (its own server certificate, issued by the shared CA) and
// serves the whole API.
type Replicas struct {
	t    testing.TB
	opts []Option
	// DSN is the connection string of the shared database.
	DSN string
	// CACertFile and CAKeyFile are the shared CA (tls.ca_cert_file,
	// tls.ca_key_file of every replica).
	CACertFile, CAKeyFile string
	// adminToken is the bootstrap admin token the first replica created;
	// later replicas get a copy of it in their data directory.
	adminToken string
	// All lists the replicas in the order they were started (Add appends).
	All []*ControlPlane
}

// StartReplicas starts n control planes (replicas) on one fresh PostgreSQL
// database of the shared test cluster, whatever StoreEnv says, one after
// the other, each with opts and a fresh data directory (WithDataDir and
// WithStore in opts are overridden). The test is skipped when PostgreSQL is
// missing (a failure under FLOTILLA_E2E=1). The replicas stop when the test
// ends.
func StartReplicas(t testing.TB, n int, opts ...Option) *Replicas {
	t.Helper()
	p := cluster.Get(t)
	r := &Replicas{t: t, opts: opts, DSN: p.AdminConninfo(p.CreateDatabase(t))}
	r.writeCA()
	for range n {
		r.Add()
	}
	return r
}

// writeCA creates the shared CA in a directory of its own.
func (r *Replicas) writeCA() {
	r.t.Helper()
	dir := r.t.TempDir()
	ca, keyPEM, err := pki.NewCA("Flotilla CA", pki.CAValidity, time.Now)
	if err != nil {
		r.t.Fatal(err)
	}
	r.CACertFile, r.CAKeyFile = filepath.Join(dir, pki.CACertFile), filepath.Join(dir, pki.CAKeyFile)
	if err := fsutil.WriteFileAtomic(r.CAKeyFile, keyPEM, 0o600); err != nil {
		r.t.Fatal(err)
	}
	if err := fsutil.WriteFileAtomic(r.CACertFile, ca.CertificatePEM(), 0o644); err != nil {
		r.t.Fatal(err)
	}
}

// Add starts one more replica on the shared database and CA and appends it
// to All.
func (r *Replicas) Add() *ControlPlane {
	r.t.Helper()
	dir := r.t.TempDir()
	if err := os.Chmod(dir, 0o700); err != nil {
		r.t.Fatal(err)
	}
	if r.adminToken != "" {
		// The bootstrap token is created once per database; an operator
		// copies its file to the other replicas' hosts.
		if err := fsutil.WriteFileAtomic(filepath.Join(dir, auth.AdminTokenFile), []byte(r.adminToken+"\n"), 0o600); err != nil {
			r.t.Fatal(err)
		}
	}
	shared := func(c *config.Config) {
		c.Store.Driver = config.DriverPostgres
		c.Store.DSN = r.DSN
		c.TLS.CACertFile, c.TLS.CAKeyFile = r.CACertFile, r.CAKeyFile
	}
	opts := append([]Option{WithConfig(shared)}, r.opts...)
	opts = append(opts, WithDataDir(dir), WithStore(Postgres))
	cp := Start(r.t, opts...)
	if r.adminToken == "" {
		r.adminToken = cp.AdminToken
	}
	r.All = append(r.All, cp)
	return cp
}

// Live lists the replicas not stopped.
func (r *Replicas) Live() []*ControlPlane {
	var live []*ControlPlane
	for _, cp := range r.All {
		if !cp.Stopped() {
			live = append(live, cp)
		}
	}
	return live
}

// AdminToken is the bootstrap admin token, valid on every replica.
func (r *Replicas) AdminToken() string { return r.adminToken }
