package e2e

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"flotilla.dev/e2e/internal/fixture"
	"flotilla.dev/e2e/internal/grpcurl"
)

// commandsEnv is one host as the commands test sees it: a control plane,
// one agent configured for Docker, backups and Nginx, and the real
// things those act on.
type commandsEnv struct {
	top      *testing.T // processes live as long as the whole test
	g        grpcurl.Client
	agentBin string
	agentCfg string
	agent    *fixture.Process
	agentID  string
	// commandIDs are the commands run so far, oldest first.
	commandIDs []string

	docker    *fixture.Docker
	registry  string            // 127.0.0.1:<port>
	images    map[string]string // version → reference in the local registry
	app       appContainer
	unmanaged string // a container without the managed label

	pg *fixture.Postgres

	nginx    *fixture.Nginx
	backendA *fixture.Backend
	backendB *fixture.Backend
}

// appContainer is the application container the commands act on.
type appContainer struct {
	name     string
	hostPort int
	env      string // an environment variable the restart must keep
	label    string // a label (key=value) the restart must keep
}

func (a appContainer) url() string { return fmt.Sprintf("http://127.0.0.1:%d/", a.hostPort) }

// commandTimeout bounds a command from RunCommand to its final snapshot.
const commandTimeout = 60 * time.Second

const (
	upstreamName = "shop"
	databaseName = "shop"
)

// newCommandsEnv starts every dependency, then the control plane and the
// agent, and waits until the agent is connected.
func newCommandsEnv(t *testing.T) *commandsEnv {
	t.Helper()
	env := &commandsEnv{top: t}
	env.agentBin = fixture.Binary(t, "flotilla-agent")

	began := time.Now()
	env.startDocker(t)
	dockerReady := time.Now()
	env.startPostgres(t)
	pgReady := time.Now()
	env.startNginx(t)
	t.Logf("fixtures ready in %s (registry, images and app container %s; PostgreSQL %s; nginx %s): images %v",
		time.Since(began).Round(10*time.Millisecond), dockerReady.Sub(began).Round(10*time.Millisecond),
		pgReady.Sub(dockerReady).Round(10*time.Millisecond), time.Since(pgReady).Round(10*time.Millisecond), env.images)

	dir := t.TempDir()
	env.g = startControlPlane(t, dir).api

	env.agentCfg = env.writeAgentConfig(t, dir)
	env.agent = env.startAgent("agent")
	env.agentID = env.waitAgent(t, "AGENT_STATE_CONNECTED")
	return env
}

// startDocker starts the registry, publishes the test images, and creates
// the application container from v1 and a container the agent must not
// touch.
func (env *commandsEnv) startDocker(t *testing.T) {
	t.Helper()
	env.docker = fixture.NewDocker(t)
	reg := fixture.StartRegistry(t)
	env.registry = reg.Addr
	env.images = fixture.BuildAppImages(t, env.docker, reg, "v1", "v2", fixture.VersionCrash)
	env.docker.Pull(t, env.images["v1"])

	env.app = appContainer{
		name:     env.docker.Name("web"),
		hostPort: fixture.FreePort(t),
		env:      "SHOP_GREETING=hello from e2e",
		label:    "com.example.team=shop",
	}
	key, value, _ := strings.Cut(env.app.label, "=")
	env.docker.CreateContainer(t, fixture.ContainerSpec{
		Name: env.app.name, Image: env.images["v1"], Env: []string{env.app.env},
		Labels: map[string]string{key: value}, Managed: true, HostPort: env.app.hostPort, Start: true,
	})
	waitBody(t, env.app.url(), "v1")

	env.unmanaged = env.docker.Name("unmanaged")
	env.docker.CreateContainer(t, fixture.ContainerSpec{Name: env.unmanaged, Image: env.images["v1"]})
}

// startPostgres starts a cluster with a seeded database and a backup role
// that may only read.
func (env *commandsEnv) startPostgres(t *testing.T) {
	t.Helper()
	env.pg = fixture.StartPostgres(t)
	env.pg.Exec(t, "postgres",
		"CREATE ROLE flotilla_backup LOGIN PASSWORD 'e2e-backup-secret'",
		"GRANT pg_read_all_data TO flotilla_backup",
		"CREATE DATABASE "+databaseName)
	env.pg.Exec(t, databaseName,
		`CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL, email text NOT NULL)`,
		`INSERT INTO customers SELECT i, 'customer ' || i, md5(i::text) || '@example.com' FROM generate_series(1, 3000) AS i`,
		`CREATE TABLE orders (id int PRIMARY KEY, customer_id int NOT NULL REFERENCES customers,
		 amount numeric(10,2) NOT NULL, note text)`,
		`INSERT INTO orders SELECT i, 1 + i % 3000, (i * 7 % 100000) / 100.0, repeat(md5(i::text), 4)
		 FROM generate_series(1, 5000) AS i`)
}

// startNginx starts two backends and an nginx balancing between them.
func (env *commandsEnv) startNginx(t *testing.T) {
	t.Helper()
	env.backendA, env.backendB = fixture.StartBackend(t, "A"), fixture.StartBackend(t, "B")
	env.nginx = fixture.StartNginx(t, fixture.Upstream{Name: upstreamName, Servers: []string{env.backendA.Addr, env.backendB.Addr}})
}

// writeAgentConfig writes the agent's YAML configuration, with a join
// token file and a database password file (both 0600).
func (env *commandsEnv) writeAgentConfig(t *testing.T, dir string) string {
	t.Helper()
	join := env.g.CreateJoinToken(t, "e2e commands", 1)
	secrets := filepath.Join(dir, "secrets")
	fixture.WriteFile(t, filepath.Join(secrets, "join.token"), join.Token+"\n", 0o600)
	fixture.WriteFile(t, filepath.Join(secrets, "shop.pgpass"), "e2e-backup-secret\n", 0o600)
	cfg := fmt.Sprintf(agentConfig, env.g.Addr, join.CACertSHA256, filepath.Join(secrets, "join.token"),
		filepath.Join(dir, "agent"), env.registry,
		env.pg.Bin("pg_dump"), env.pg.Bin("pg_restore"), env.pg.Port, filepath.Join(secrets, "shop.pgpass"),
		env.nginx.Binary, env.nginx.ConfigFile, env.nginx.UpstreamFile(upstreamName))
	path := filepath.Join(dir, "agent.yaml")
	fixture.WriteFile(t, path, cfg, 0o600)
	t.Logf("agent configuration %s:\n%s", path, cfg)
	return path
}

const agentConfig = `control_plane:
  address: %[1]s
  ca_sha256: %[2]s
join_token_file: %[3]s
state_dir: %[4]s
hostname: e2e-cmd-1
labels:
  role: web
heartbeat_interval: 1s
log:
  format: console
docker:
  allowed_registries: [%[5]s]
  managed_label: flotilla.managed=true
  stop_timeout: 5s
  start_grace_period: 2s
backup:
  pg_dump: %[6]s
  pg_restore: %[7]s
  databases:
    shop:
      host: 127.0.0.1
      port: %[8]d
      user: flotilla_backup
      dbname: shop
      password_file: %[9]s
      sslmode: disable
nginx:
  binary: %[10]s
  config_file: %[11]s
  upstreams:
    shop:
      file: %[12]s
      block: shop
`

// startAgent starts the agent with its configuration file, for the rest
// of the whole test.
func (env *commandsEnv) startAgent(name string) *fixture.Process {
	return fixture.StartProcess(env.top, name, env.agentBin, nil, "-config", env.agentCfg)
}

// waitAgent waits until the test's only agent is in state and returns its ID.
func (env *commandsEnv) waitAgent(t *testing.T, state string) string {
	t.Helper()
	var id string
	fixture.Eventually(t, 20*time.Second, "the agent to be "+state, func() error {
		agents, err := env.g.ListAgents("env=e2e,role=web")
		if err != nil {
			return err
		}
		if len(agents) != 1 {
			return fmt.Errorf("%d agents", len(agents))
		}
		if s := agents[0].State; s != state {
			return fmt.Errorf("state %s", s)
		}
		id = agents[0].ID
		return nil
	})
	return id
}

// waitBody waits, bounded, until GET url answers 200 with body want.
func waitBody(t *testing.T, url, want string) {
	t.Helper()
	fixture.Eventually(t, 20*time.Second, "GET "+url+" to answer "+want, func() error {
		got, err := fixture.Get(url)
		if err != nil {
			return err
		}
		if got != want {
			return fmt.Errorf("answered %q", got)
		}
		return nil
	})
}

// runToEnd runs a command, follows it with WatchCommand until it ends, and
// returns its final snapshot and how long that took.
func (env *commandsEnv) runToEnd(t *testing.T, body string) (grpcurl.FleetCommand, time.Duration) {
	t.Helper()
	fc, _, took := env.g.RunToEnd(t, body, commandTimeout)
	return fc, took
}
