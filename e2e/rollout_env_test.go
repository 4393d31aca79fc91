package e2e

import (
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"flotilla.dev/e2e/internal/fixture"
	"flotilla.dev/e2e/internal/grpcurl"
	"flotilla.dev/e2e/internal/rollouttest"
)

// rolloutHosts is the number of application hosts of the rollout test.
const rolloutHosts = 3

// rolloutContainer is the service's container as commands name it on
// every host.
const rolloutContainer = "web"

// rolloutEnv is a small fleet on one machine: a control plane, three
// application hosts and a load balancer, each host an agent of its own.
// The hosts share the one Docker engine, so each calls the service's
// container "web" through docker.container_names and publishes it on an
// address of its own (127.0.0.1, .2, .3) with the same port, as real
// hosts would: the address label plus server_port is the upstream server.
type rolloutEnv struct {
	top    *testing.T
	g      grpcurl.Client
	docker *fixture.Docker
	images map[string]string // version → reference in the local registry
	port   int               // the application's port on every host
	hosts  []*appHost
	nginx  *fixture.Nginx
	lbID   string
	// lbProc is the load balancer's agent.
	lbProc *fixture.Process
	// cpAddrs are the control plane addresses the agents are given.
	cpAddrs []string
	// registry is the local registry's address (host:port).
	registry string
	// dir holds the agents' configurations and state.
	dir string
}

// appHost is one application host: its agent and its container.
type appHost struct {
	name      string // the agent's hostname, e2e-web-<n>
	address   string // 127.0.0.<n>
	container string // the local name of the service's container
	agentID   string
	proc      *fixture.Process
}

func (h *appHost) server(port int) string { return h.address + ":" + strconv.Itoa(port) }

func (h *appHost) url(port int) string { return "http://" + h.server(port) + "/" }

// The rollout scenarios' view of the fleet (rollouttest.Fleet).

func (env *rolloutEnv) API() grpcurl.Client       { return env.g }
func (env *rolloutEnv) Docker() *fixture.Docker   { return env.docker }
func (env *rolloutEnv) Nginx() *fixture.Nginx     { return env.nginx }
func (env *rolloutEnv) Images() map[string]string { return env.images }

func (env *rolloutEnv) AppHosts() []rollouttest.Host {
	var out []rollouttest.Host
	for _, h := range env.hosts {
		out = append(out, rollouttest.Host{Name: h.name, AgentID: h.agentID, Container: h.container, Server: h.server(env.port)})
	}
	return out
}

// newRolloutEnv starts the registry with the images, the three application
// containers on v1, nginx in front of them, the control plane and the four
// agents, and waits until every application host reports its container.
func newRolloutEnv(t *testing.T) *rolloutEnv {
	t.Helper()
	return newRolloutEnvWith(t, func(t *testing.T, dir string) (grpcurl.Client, []string) {
		cp := startControlPlane(t, dir)
		return cp.api, []string{cp.api.Addr}
	})
}

// controlPlaneStarter starts the control plane (one, or a replica set)
// with its data under dir and returns grpcurl against it and the
// addresses the agents are given.
type controlPlaneStarter func(t *testing.T, dir string) (api grpcurl.Client, agentAddrs []string)

// newRolloutEnvWith is newRolloutEnv with the control plane that start
// starts.
func newRolloutEnvWith(t *testing.T, start controlPlaneStarter) *rolloutEnv {
	t.Helper()
	env := &rolloutEnv{top: t}
	agentBin := fixture.Binary(t, "flotilla-agent")

	began := time.Now()
	env.docker = fixture.NewDocker(t)
	reg := fixture.StartRegistry(t)
	env.registry = reg.Addr
	env.images = fixture.BuildAppImages(t, env.docker, reg, "v1", "v2", fixture.VersionUnhealthy)
	env.docker.Pull(t, env.images["v1"])
	env.port = fixture.FreePort(t)
	var servers []string
	for i := range rolloutHosts {
		h := &appHost{name: fmt.Sprintf("e2e-web-%d", i+1), address: fmt.Sprintf("127.0.0.%d", i+1),
			container: env.docker.Name(fmt.Sprintf("web-host%d", i+1))}
		env.createApp(t, h)
		env.hosts = append(env.hosts, h)
		servers = append(servers, h.server(env.port))
	}
	for _, h := range env.hosts {
		waitBody(t, h.url(env.port), "v1")
	}
	env.nginx = fixture.StartNginx(t, fixture.Upstream{Name: rollouttest.Upstream, Servers: servers})
	t.Logf("fixtures ready in %s: images %v, upstream %s → %v", time.Since(began).Round(10*time.Millisecond), env.images,
		env.nginx.URL(rollouttest.Upstream), servers)

	dir := t.TempDir()
	env.dir = dir
	env.g, env.cpAddrs = start(t, dir)
	env.startAgents(t, dir, agentBin, reg.Addr)
	return env
}

// createApp creates and starts a host's application container from v1,
// published on the host's own loopback address.
func (env *rolloutEnv) createApp(t *testing.T, h *appHost) {
	t.Helper()
	env.docker.CreateContainer(t, fixture.ContainerSpec{
		Name: h.container, Image: env.images["v1"], Labels: map[string]string{"com.example.host": h.name},
		HostPort: env.port, HostIP: h.address, Start: true,
	})
}

// startAgents enrols the four agents with one join token and waits until
// each application host reports the service's container on v1, healthy.
func (env *rolloutEnv) startAgents(t *testing.T, dir, agentBin, registry string) {
	t.Helper()
	join := env.g.CreateJoinToken(t, "e2e rollout", rolloutHosts+1)
	tokenFile := filepath.Join(dir, "secrets", "join.token")
	fixture.WriteFile(t, tokenFile, join.Token+"\n", 0o600)
	common := rollouttest.ControlPlaneYAML(env.cpAddrs, join.CACertSHA256) + fmt.Sprintf(agentCommon, tokenFile)
	for _, h := range env.hosts {
		cfg := common + fmt.Sprintf(webAgentConfig, filepath.Join(dir, h.name), h.name, h.address) +
			rollouttest.AppHostYAML(h.url(env.port)+"health", registry, h.container)
		path := filepath.Join(dir, h.name+".yaml")
		fixture.WriteFile(t, path, cfg, 0o600)
		if h == env.hosts[0] {
			t.Logf("agent configuration of %s:\n%s", h.name, cfg)
		}
		h.proc = fixture.StartProcess(env.top, "agent "+h.name, agentBin, nil, "-config", path)
	}
	lbCfg := rollouttest.LoadBalancerYAML(env.cpAddrs, join, tokenFile, filepath.Join(dir, "e2e-lb-1"), "e2e-lb-1", env.nginx)
	lbPath := filepath.Join(dir, "e2e-lb-1.yaml")
	fixture.WriteFile(t, lbPath, lbCfg, 0o600)
	t.Logf("agent configuration of e2e-lb-1:\n%s", lbCfg)
	env.lbProc = fixture.StartProcess(env.top, "agent e2e-lb-1", agentBin, nil, "-config", lbPath)
	env.waitFleet(t)
}

// waitFleet waits until the load balancer is connected and every
// application host is connected, healthy and reports "web" on v1.
func (env *rolloutEnv) waitFleet(t *testing.T) {
	t.Helper()
	fixture.Eventually(t, 30*time.Second, "the four agents to connect and report", func() error {
		agents, err := env.g.ListAgents("env=e2e")
		if err != nil {
			return err
		}
		byName := map[string]grpcurl.Agent{}
		for _, a := range agents {
			byName[a.Hostname] = a
		}
		lb, ok := byName["e2e-lb-1"]
		if !ok || lb.State != "AGENT_STATE_CONNECTED" {
			return fmt.Errorf("the load balancer is not connected: %+v", lb)
		}
		env.lbID = lb.ID
		for _, h := range env.hosts {
			a, ok := byName[h.name]
			if !ok || a.State != "AGENT_STATE_CONNECTED" || !a.LastHeartbeat.App.Healthy {
				return fmt.Errorf("%s is not connected and healthy: %+v", h.name, a)
			}
			i := slices.IndexFunc(a.LastHeartbeat.Containers, func(c grpcurl.ManagedContainer) bool { return c.Name == rolloutContainer })
			if i < 0 || a.LastHeartbeat.Containers[i].Image != env.images["v1"] {
				return fmt.Errorf("%s reports containers %+v, want %s on v1", h.name, a.LastHeartbeat.Containers, rolloutContainer)
			}
			h.agentID = a.ID
		}
		return nil
	})
}

// agentCommon follows the control_plane section in every agent's
// configuration.
const agentCommon = `join_token_file: %[1]s
heartbeat_interval: 1s
log:
  format: console
`

// webAgentConfig is the start of the rest of an application host's
// configuration (rollouttest.AppHostYAML follows): its state, name and
// labels, the address label giving its server in the upstream.
const webAgentConfig = `state_dir: %[1]s
hostname: %[2]s
labels:
  role: web
  address: %[3]s
`
