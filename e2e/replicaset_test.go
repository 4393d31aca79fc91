package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"flotilla.dev/e2e/internal/fixture"
	"flotilla.dev/e2e/internal/grpcurl"
)

// replicaCount is the number of control planes of a replica set: the
// production shape of docs/ha.md.
const replicaCount = 3

// replicaSet is several flotilla-controlplane processes on one PostgreSQL
// database, each on a host of its own as far as they can tell: a data
// directory, a gRPC and a metrics address, and a path to the database (a
// TCP proxy the test can cut). They share one CA through
// tls.ca_cert_file and tls.ca_key_file, as docs/ha.md tells operators.
type replicaSet struct {
	db storeDB
	// caCert and caKey are the shared CA's files.
	caCert, caKey string
	// token is the bootstrap admin token the first replica created.
	token    string
	replicas []*replica
	// grpcurl is the grpcurl binary.
	grpcurl string
	// top is the test the replica set lives as long as: every process is
	// started under it, whichever subtest (re)starts it.
	top *testing.T
	// flags are passed to every replica after the ones it always gets.
	flags []string
}

// replica is one control plane of a replicaSet. Its addresses, data
// directory and database proxy stay the same across restarts, as a host's
// do; proc is the process of its current start.
type replica struct {
	name        string
	addr        string
	metricsAddr string
	dataDir     string
	configFile  string
	// pg is this replica's path to PostgreSQL: cut it to partition the
	// replica from the database.
	pg *pgProxy

	mu   sync.Mutex
	proc *fixture.Process
	// starts counts the processes started for this replica.
	starts int
}

// replicaOption changes how startReplicas runs the replicas.
type replicaOption func(*replicaSet)

// withReplicaFlags passes flags to every replica, e.g. a lease TTL.
func withReplicaFlags(flags ...string) replicaOption {
	return func(s *replicaSet) { s.flags = append(s.flags, flags...) }
}

// startReplicas starts PostgreSQL, writes the shared CA, starts the first
// replica (which migrates the database and creates the admin token), then
// the others, and waits until every one answers. Without PostgreSQL it
// skips (fails under FLOTILLA_E2E=1).
func startReplicas(t *testing.T, dir string, n int, opts ...replicaOption) *replicaSet {
	t.Helper()
	s := &replicaSet{grpcurl: fixture.Binary(t, "grpcurl"), top: t}
	fixture.Binary(t, "flotilla-controlplane")
	s.db = startStoreDB(t, dir)
	for _, o := range opts {
		o(s)
	}
	s.caCert, s.caKey = writeCA(t, filepath.Join(dir, "shared-ca"))
	for i := 1; i <= n; i++ {
		name := fmt.Sprintf("replica-%d", i)
		r := &replica{name: name, addr: fixture.FreeAddr(t), metricsAddr: fixture.FreeAddr(t),
			dataDir: filepath.Join(dir, name, "data"), configFile: filepath.Join(dir, name, "controlplane.yaml"),
			pg: startPGProxy(t, fmt.Sprintf("127.0.0.1:%d", s.db.pg.Port))}
		fixture.WriteFile(t, r.configFile, fmt.Sprintf(replicaConfig, s.caCert, s.caKey), 0o600)
		s.replicas = append(s.replicas, r)
	}
	began := time.Now()
	s.start(t, s.replicas[0])
	token, err := os.ReadFile(filepath.Join(s.replicas[0].dataDir, "admin.token"))
	if err != nil {
		t.Fatalf("the first replica's admin token: %v", err)
	}
	s.token = strings.TrimSpace(string(token))
	for _, r := range s.replicas[1:] {
		s.start(t, r)
	}
	t.Logf("%d replicas on PostgreSQL %d serving %s after the first one started: %s", n, s.db.pg.Port,
		time.Since(began).Round(10*time.Millisecond), strings.Join(s.addrs(), ", "))
	return s
}

// replicaConfig is each replica's configuration file: the shared CA. The
// rest comes from flags, as each host's unit file would give it.
const replicaConfig = `# Written by the e2e replica set: every replica signs agent certificates
# with the one CA, so that an agent's certificate is good on any of them.
tls:
  ca_cert_file: %s
  ca_key_file: %s
`

// dsn is the replica's connection string: the database through its proxy.
func (s *replicaSet) dsn(r *replica) string {
	return fmt.Sprintf("host=127.0.0.1 port=%d user=%s dbname=%s sslmode=disable connect_timeout=5", r.pg.port, s.db.user, s.db.name)
}

// start starts a process for r (again, after a kill or an exit) and waits
// until it answers the health check. The process lives until the test
// that started the set ends.
func (s *replicaSet) start(t *testing.T, r *replica) {
	t.Helper()
	args := append([]string{"-config", r.configFile, "-data-dir", r.dataDir, "-listen", r.addr,
		"-metrics-listen", r.metricsAddr, "-log-format", "console",
		"-store-driver", "postgres", "-store-dsn", s.dsn(r), "-store-password-file", s.db.passwordFile}, s.flags...)
	r.mu.Lock()
	r.starts++
	label := r.name
	if r.starts > 1 {
		label = fmt.Sprintf("%s (start %d)", r.name, r.starts)
	}
	p := fixture.StartProcess(s.top, label, fixture.Binary(t, "flotilla-controlplane"), nil, args...)
	r.proc = p
	r.mu.Unlock()
	api := s.api(r)
	fixture.Eventually(t, 30*time.Second, label+" to serve", func() error {
		if p.Exited() {
			return fmt.Errorf("%s exited:\n%s", label, p.Output())
		}
		return api.Serving()
	})
}

// process is the replica's current process.
func (r *replica) process() *fixture.Process {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.proc
}

// kill SIGKILLs the replica's process and waits until it is gone.
func (r *replica) kill(t *testing.T) {
	t.Helper()
	p := r.process()
	p.Signal(syscall.SIGKILL)
	p.Wait(t, 10*time.Second)
}

// holds reports whether holder (a lease's holder ID: host/PID/random) is
// the replica's current process.
func (r *replica) holds(holder string) bool {
	return holder != "" && strings.Contains(holder, fmt.Sprintf("/%d/", r.process().PID()))
}

// api is grpcurl against one replica, with the admin token.
func (s *replicaSet) api(r *replica) grpcurl.Client {
	return grpcurl.Client{Path: s.grpcurl, Addr: r.addr, CAFile: s.caCert, Token: s.token}
}

// addrs are the replicas' gRPC addresses, as agents list them in
// control_plane.addresses.
func (s *replicaSet) addrs() []string {
	var out []string
	for _, r := range s.replicas {
		out = append(out, r.addr)
	}
	return out
}

// byHolder returns the replica whose current process is holder, or nil.
func (s *replicaSet) byHolder(holder string) *replica {
	for _, r := range s.replicas {
		if r.holds(holder) {
			return r
		}
	}
	return nil
}

// other returns a replica other than the ones given, still running.
func (s *replicaSet) other(t *testing.T, not ...*replica) *replica {
	t.Helper()
	for _, r := range s.replicas {
		excluded := false
		for _, n := range not {
			excluded = excluded || r == n
		}
		if !excluded && !r.process().Exited() {
			return r
		}
	}
	t.Fatalf("no running replica besides %d excluded", len(not))
	return nil
}

// waitAllServing waits until every replica answers; a replica whose
// process exited fails the test.
func (s *replicaSet) waitAllServing(t *testing.T) {
	t.Helper()
	for _, r := range s.replicas {
		api, p := s.api(r), r.process()
		fixture.Eventually(t, 30*time.Second, r.name+" to serve", func() error {
			if p.Exited() {
				return fmt.Errorf("%s exited:\n%s", r.name, p.Output())
			}
			return api.Serving()
		})
	}
}

// lease is a row of the leases table.
type lease struct {
	Holder  string
	Token   int64
	Expired bool
}

// lease reads a lease's row, as the database sees it now; ok is false when
// there is none (or the database does not answer).
func (s *replicaSet) lease(ctx context.Context, name string) (lease, bool, error) {
	conn, err := s.db.pg.Dial(ctx, s.db.name)
	if err != nil {
		return lease{}, false, err
	}
	defer conn.Close(context.Background())
	var l lease
	err = conn.QueryRow(ctx, `SELECT holder, token, expires_at <= now() FROM leases WHERE name = $1`, name).Scan(&l.Holder, &l.Token, &l.Expired)
	if err != nil {
		if strings.Contains(err.Error(), "no rows") {
			return lease{}, false, nil
		}
		return lease{}, false, err
	}
	return l, true, nil
}

// replicaLease reads the replica/<holder> lease of r's current process.
func (s *replicaSet) replicaLease(ctx context.Context, r *replica) (lease, bool, error) {
	conn, err := s.db.pg.Dial(ctx, s.db.name)
	if err != nil {
		return lease{}, false, err
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(ctx, `SELECT holder, token, expires_at <= now() FROM leases WHERE name LIKE 'replica/%'`)
	if err != nil {
		return lease{}, false, err
	}
	defer rows.Close()
	for rows.Next() {
		var l lease
		if err := rows.Scan(&l.Holder, &l.Token, &l.Expired); err != nil {
			return lease{}, false, err
		}
		if r.holds(l.Holder) {
			return l, true, nil
		}
	}
	return lease{}, false, rows.Err()
}

// streamHolders maps every agent's ID to the holder of the replica that
// holds its stream ("" for none), as the agents table says.
func (s *replicaSet) streamHolders(ctx context.Context) (map[string]string, error) {
	conn, err := s.db.pg.Dial(ctx, s.db.name)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(ctx, `SELECT id, stream_holder FROM agents`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var id, holder string
		if err := rows.Scan(&id, &holder); err != nil {
			return nil, err
		}
		out[id] = holder
	}
	return out, rows.Err()
}

// writeCA writes a CA certificate and its key (PKCS#8, 0600) into dir, as
// an operator makes the one CA every replica is given, and returns their
// paths.
func writeCA(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: "Flotilla e2e replicas CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")
	fixture.WriteFile(t, certFile, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), 0o644)
	fixture.WriteFile(t, keyFile, string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})), 0o600)
	return certFile, keyFile
}
