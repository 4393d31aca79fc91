package e2e

import (
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"flotilla.dev/e2e/internal/fixture"
	"flotilla.dev/e2e/internal/grpcurl"
)

// storeDB is a database on a throwaway PostgreSQL cluster that control
// planes use as their store, reached over TCP with a password, as in
// production.
type storeDB struct {
	pg *fixture.Postgres
	// name is the database; user owns it and logs in with password.
	name, user, password string
	// passwordFile holds password (mode 0600).
	passwordFile string
}

// storeRole is the control plane's PostgreSQL role in these tests.
const storeRole = "flotilla_cp"

// startStoreDB starts a cluster with a database owned by a login role and
// writes the role's password file under dir.
func startStoreDB(t *testing.T, dir string) storeDB {
	t.Helper()
	pg := fixture.StartPostgres(t)
	db := storeDB{pg: pg, user: storeRole, password: "e2e-store-" + fixture.NewRunID(), passwordFile: filepath.Join(dir, "store.password")}
	pg.Exec(t, "postgres", fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD '%s'", db.user, db.password))
	db.name = pg.CreateDatabase(t)
	pg.Exec(t, "postgres", fmt.Sprintf("ALTER DATABASE %s OWNER TO %s", db.name, db.user))
	fixture.WriteFile(t, db.passwordFile, db.password+"\n", 0o600)
	return db
}

// dsn is the connection string without the password.
func (db storeDB) dsn() string {
	return fmt.Sprintf("host=127.0.0.1 port=%d user=%s dbname=%s sslmode=disable connect_timeout=5", db.pg.Port, db.user, db.name)
}

// flags makes a control plane use the database, with extra flags.
func (db storeDB) flags(extra ...string) cpOption {
	return withFlags(append([]string{"-store-driver", "postgres", "-store-dsn", db.dsn(), "-store-password-file", db.passwordFile}, extra...)...)
}

// startAgentVia enrolls an agent through g and starts it connected to addr
// (g's address or a forwarder in front of it), allowed to pull from
// registries, and returns its ID once it is connected.
func startAgentVia(t *testing.T, g grpcurl.Client, addr, dir string, registries ...string) string {
	t.Helper()
	join := g.CreateJoinToken(t, "postgres e2e", 1)
	tokenFile := filepath.Join(dir, "agent-secrets", "join.token")
	fixture.WriteFile(t, tokenFile, join.Token+"\n", 0o600)
	cfg := fmt.Sprintf(`control_plane:
  address: %s
  ca_sha256: %s
join_token_file: %s
state_dir: %s
hostname: e2e-pg-1
labels:
  role: web
heartbeat_interval: 1s
log:
  format: console
docker:
  allowed_registries: [%s]
`, addr, join.CACertSHA256, tokenFile, filepath.Join(dir, "agent"), strings.Join(registries, ", "))
	path := filepath.Join(dir, "agent.yaml")
	fixture.WriteFile(t, path, cfg, 0o600)
	fixture.StartProcess(t, "agent", fixture.Binary(t, "flotilla-agent"), nil, "-config", path)
	return onlyAgentConnected(t, g)
}

// onlyAgentConnected waits until the control plane behind g has exactly
// one agent, connected, and returns its ID.
func onlyAgentConnected(t *testing.T, g grpcurl.Client) string {
	t.Helper()
	var id string
	fixture.Eventually(t, 20*time.Second, "the agent to connect", func() error {
		agents, err := g.ListAgents("")
		if err != nil {
			return err
		}
		if len(agents) != 1 || agents[0].State != "AGENT_STATE_CONNECTED" {
			return fmt.Errorf("agents: %+v", agents)
		}
		id = agents[0].ID
		return nil
	})
	return id
}

// forwarder is a TCP forwarder in front of several control planes, as a
// load balancer or a moved virtual address is in production: each
// connection goes to the first backend that accepts it.
type forwarder struct {
	addr     string
	backends []string
}

// startForwarder listens on a free address and forwards to backends.
func startForwarder(t *testing.T, backends ...string) *forwarder {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &forwarder{addr: ln.Addr().String(), backends: backends}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go f.forward(c)
		}
	}()
	return f
}

// forward copies between c and the first backend that accepts a
// connection, until either side closes.
func (f *forwarder) forward(c net.Conn) {
	defer c.Close()
	for _, b := range f.backends {
		up, err := net.DialTimeout("tcp", b, time.Second)
		if err != nil {
			continue
		}
		defer up.Close()
		done := make(chan struct{}, 2)
		go func() { _, _ = io.Copy(up, c); done <- struct{}{} }()
		go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
		<-done
		return
	}
}
