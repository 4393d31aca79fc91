package fleet

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"flotilla.dev/e2e/internal/fixture"
	"flotilla.dev/e2e/internal/grpcurl"
)

// The database host of the backup scenario and what its agent is
// configured with.
const (
	dbHostname = "db-1"
	dbSelector = "env=e2e,role=db"
	// backupDatabase is the database's name in backup.databases (what
	// commands name) and on the server.
	backupDatabase = "shop"
	// backupRole may read every table and nothing more.
	backupRole     = "flotilla_backup"
	backupPassword = "e2e-backup-secret"
	// backupVolume is the mount point of the host's backup volume. The
	// archives go one level below it, into a directory the agent creates
	// 0700: Docker creates a volume's root 0755.
	backupVolume = "/var/backups/flotilla"
	backupDir    = backupVolume + "/archives"
	// dbPasswordFile is where the backup role's password is mounted.
	dbPasswordFile = "/etc/flotilla/" + backupDatabase + ".pgpass"
)

// startDatabaseFleet starts what the backup scenario needs: the private
// network, a PostgreSQL cluster on the host that containers on the
// network reach at its gateway, seeded with a database and a read-only
// backup role, the control plane, and one database host — the agent image
// with the host's PostgreSQL client programs — whose agent registers from
// a join token.
func startDatabaseFleet(t *testing.T) (*fleet, *fixture.Postgres) {
	t.Helper()
	f, grpcurlBin := newFleet(t)
	f.network = f.e.Name("net")
	f.e.createNetwork(t, f.network)
	gateway, subnet := f.e.networkGateway(t, f.network)

	pg := fixture.StartPostgresOn(t, gateway, subnet)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- postgres (listening on 127.0.0.1 and %s:%d, clients from %s) ---\n%s", gateway, pg.Port, subnet, pg.ServerLog())
		}
	})
	seedDatabase(t, pg)
	image := fixture.BuildDatabaseHostImage(t, f.e.Docker, agentImage)

	f.startControlPlane(t, grpcurlBin)
	join := f.createJoinToken(t, 1)
	f.hosts = append(f.hosts, f.startDatabaseHost(t, image, gateway, pg.Port, join))
	return f, pg
}

// networkGateway returns the gateway and subnet of a network's IPv4
// configuration: the gateway is the host's own address on the network.
func (e engine) networkGateway(t *testing.T, name string) (netip.Addr, netip.Prefix) {
	t.Helper()
	ctx, cancel := e.ctx()
	defer cancel()
	res, err := e.Client.NetworkInspect(ctx, name, client.NetworkInspectOptions{})
	if err != nil {
		t.Fatalf("inspect network %s: %v", name, err)
	}
	for _, c := range res.Network.IPAM.Config {
		if c.Subnet.Addr().Is4() && c.Gateway.Is4() {
			return c.Gateway, c.Subnet
		}
	}
	t.Fatalf("network %s has no IPv4 subnet with a gateway: %+v", name, res.Network.IPAM.Config)
	return netip.Addr{}, netip.Prefix{}
}

// seedDatabase creates the database with a few thousand rows in two
// tables, and the backup role, which may read all data and change none.
func seedDatabase(t *testing.T, pg *fixture.Postgres) {
	t.Helper()
	pg.Exec(t, "postgres",
		fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD '%s'", backupRole, backupPassword),
		"GRANT pg_read_all_data TO "+backupRole,
		"CREATE DATABASE "+backupDatabase)
	pg.Exec(t, backupDatabase,
		`CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL, email text NOT NULL)`,
		`INSERT INTO customers SELECT i, 'customer ' || i, md5(i::text) || '@example.com' FROM generate_series(1, 3000) AS i`,
		`CREATE TABLE orders (id int PRIMARY KEY, customer_id int NOT NULL REFERENCES customers,
		 amount numeric(10,2) NOT NULL, placed_at timestamptz NOT NULL, note text)`,
		`INSERT INTO orders SELECT i, 1 + i % 3000, (i * 7 % 100000) / 100.0,
		 timestamptz '2024-01-01 00:00:00+00' + i * interval '17 minutes', repeat(md5(i::text), 4)
		 FROM generate_series(1, 5000) AS i`)
}

// startDatabaseHost starts the database host's agent container from
// image. It registers from the join token in its environment, like the
// application hosts, and reaches PostgreSQL at the network's gateway with
// the backup role's password from a 0600 file; its archives go to a
// volume of their own. It has no Docker socket: a database host runs no
// application containers.
func (f *fleet) startDatabaseHost(t *testing.T, image string, dbAddr netip.Addr, dbPort int, join grpcurl.JoinToken) host {
	t.Helper()
	h := host{name: dbHostname}
	dir := filepath.Join(t.TempDir(), h.name)
	cfg := filepath.Join(dir, "agent.yaml")
	fixture.WriteFile(t, cfg, databaseAgentYAML(dbAddr, dbPort), 0o644)
	password := filepath.Join(dir, backupDatabase+".pgpass")
	fixture.WriteFile(t, password, backupPassword+"\n", 0o600)
	state, backups := f.e.Name(h.name+"-state"), f.e.Name(h.name+"-backups")
	f.e.createVolume(t, state)
	f.e.createVolume(t, backups)
	h.agentID = f.e.run(t, containerSpec{
		name: f.e.Name("agent-" + h.name), image: image, network: f.network,
		cmd: []string{"-config", agentConfig},
		env: agentEnv(join, h.name, "role=db"),
		binds: []string{
			state + ":" + agentVolume,
			backups + ":" + backupVolume,
			cfg + ":" + agentConfig + ":ro",
			password + ":" + dbPasswordFile + ":ro",
		},
	})
	return h
}

// databaseAgentYAML is the database host's configuration. pg_dump and
// pg_restore are left for the agent to find, in /usr/lib/postgresql/*/bin
// as on a Debian host.
func databaseAgentYAML(addr netip.Addr, port int) string {
	return fmt.Sprintf(`# The database host of the e2e fleet: its agent backs up PostgreSQL.
backup:
  directory: %[1]s
  databases:
    %[2]s:
      host: %[3]s
      port: %[4]d
      user: %[5]s
      dbname: %[2]s
      password_file: %[6]s
      sslmode: disable
`, backupDir, backupDatabase, addr, port, backupRole, dbPasswordFile)
}

// waitDatabaseHost waits until the database host's agent is connected and
// its heartbeats carry the database's statistics, which it reads over the
// network with the configured role and password; it returns the agent's
// ID.
func (f *fleet) waitDatabaseHost(t *testing.T) string {
	t.Helper()
	var id string
	fixture.Eventually(t, 60*time.Second, dbHostname+" connected, reading "+backupDatabase+"'s statistics", func() error {
		agents, err := f.g.ListAgents(dbSelector)
		if err != nil {
			return err
		}
		if len(agents) != 1 {
			return fmt.Errorf("%d agents match %s, want 1", len(agents), dbSelector)
		}
		a := agents[0]
		switch {
		case a.Hostname != dbHostname || a.State != "AGENT_STATE_CONNECTED":
			return fmt.Errorf("agent %s is %s in state %s", a.ID, a.Hostname, a.State)
		case !slices.ContainsFunc(a.LastHeartbeat.Databases, func(d grpcurl.DatabaseStats) bool { return d.Name == backupDatabase }):
			return fmt.Errorf("its last heartbeat has no statistics of %s: %+v", backupDatabase, a.LastHeartbeat.Databases)
		}
		id = a.ID
		return nil
	})
	return id
}
