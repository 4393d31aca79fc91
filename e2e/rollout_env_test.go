package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

	"flotilla.dev/e2e/internal/fixture"
)

// rolloutHosts is the number of application hosts of the rollout test.
const rolloutHosts = 3

// The service the rollout test deploys.
const (
	rolloutServiceName = "web"
	rolloutContainer   = "web"
	rolloutUpstream    = "web"
)

// rolloutEnv is a small fleet on one machine: a control plane, three
// application hosts and a load balancer, each host an agent of its own.
// The hosts share the one Docker engine, so each calls the service's
// container "web" through docker.container_names and publishes it on an
// address of its own (127.0.0.1, .2, .3) with the same port, as real
// hosts would: the address label plus server_port is the upstream server.
type rolloutEnv struct {
	top    *testing.T
	g      grpcurl
	docker *fixture.Docker
	images map[string]string // version → reference in the local registry
	port   int               // the application's port on every host
	hosts  []*appHost
	nginx  *fixture.Nginx
	lbID   string
}

// appHost is one application host: its agent and its container.
type appHost struct {
	name      string // the agent's hostname, e2e-web-<n>
	address   string // 127.0.0.<n>
	container string // the local name of the service's container
	agentID   string
}

func (h *appHost) server(port int) string { return h.address + ":" + strconv.Itoa(port) }

func (h *appHost) url(port int) string { return "http://" + h.server(port) + "/" }

// newRolloutEnv starts the registry with the images, the three application
// containers on v1, nginx in front of them, the control plane and the four
// agents, and waits until every application host reports its container.
func newRolloutEnv(t *testing.T) *rolloutEnv {
	t.Helper()
	env := &rolloutEnv{top: t}
	cpBin, grpcurlBin, agentBin := binary(t, "flotilla-controlplane"), binary(t, "grpcurl"), binary(t, "flotilla-agent")

	began := time.Now()
	env.docker = fixture.NewDocker(t)
	reg := fixture.StartRegistry(t)
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
	env.nginx = fixture.StartNginx(t, fixture.Upstream{Name: rolloutUpstream, Servers: servers})
	t.Logf("fixtures ready in %s: images %v, upstream %s → %v", time.Since(began).Round(10*time.Millisecond), env.images,
		env.nginx.URL(rolloutUpstream), servers)

	dir := t.TempDir()
	grpcAddr := freePort(t)
	start(t, "controlplane", cpBin, nil, "-data-dir", filepath.Join(dir, "cp"), "-listen", grpcAddr,
		"-metrics-listen", freePort(t), "-log-format", "console")
	env.g = grpcurl{path: grpcurlBin, addr: grpcAddr, caFile: filepath.Join(dir, "cp", "ca.crt")}
	eventually(t, 15*time.Second, "the control plane to serve", func() error {
		_, err := env.g.run(grpcAddr, "grpc.health.v1.Health/Check")
		return err
	})
	token, err := os.ReadFile(filepath.Join(dir, "cp", "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	env.g.token = strings.TrimSpace(string(token))
	env.startAgents(t, dir, grpcAddr, agentBin, reg.Addr)
	return env
}

// createApp creates and starts a host's application container from v1,
// published on the host's own loopback address. The fixture's helper
// publishes on 127.0.0.1 only, hence this one; it labels the container
// with the run ID and removes it (and a copy a restart set aside) at the
// end, like the fixture does.
func (env *rolloutEnv) createApp(t *testing.T, h *appHost) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d := env.docker
	t.Cleanup(func() { removeTestContainers(d, h.container, h.container+".flotilla-old") })
	created, err := d.Client.ContainerCreate(ctx, client.ContainerCreateOptions{
		Name:   h.container,
		Config: &container.Config{Image: env.images["v1"], Labels: d.Labels(map[string]string{"com.example.host": h.name})},
		HostConfig: &container.HostConfig{
			RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyUnlessStopped},
			PortBindings: network.PortMap{network.MustParsePort("8080/tcp"): {{
				HostIP: netip.MustParseAddr(h.address), HostPort: strconv.Itoa(env.port),
			}}},
		},
	})
	if err != nil {
		t.Fatalf("create container %s: %v", h.container, err)
	}
	if _, err := d.Client.ContainerStart(ctx, created.ID, client.ContainerStartOptions{}); err != nil {
		t.Fatalf("start container %s: %v", h.container, err)
	}
}

// removeTestContainers removes the named containers that carry d's run
// label, and nothing else.
func removeTestContainers(d *fixture.Docker, names ...string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, n := range names {
		c, err := d.Client.ContainerInspect(ctx, n, client.ContainerInspectOptions{})
		if err != nil || strings.TrimPrefix(c.Container.Name, "/") != n ||
			c.Container.Config == nil || c.Container.Config.Labels[fixture.TestLabel] != d.RunID {
			continue
		}
		_, _ = d.Client.ContainerRemove(ctx, c.Container.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
	}
}

// startAgents enrols the four agents with one join token and waits until
// each application host reports the service's container on v1, healthy.
func (env *rolloutEnv) startAgents(t *testing.T, dir, grpcAddr, agentBin, registry string) {
	t.Helper()
	var join struct {
		Token        string `json:"token"`
		CACertSHA256 string `json:"caCertSha256"`
	}
	if err := env.g.call("flotilla.v1.FleetService/CreateJoinToken", map[string]any{
		"description": "e2e rollout", "labels": map[string]string{"env": "e2e"}, "ttl": "300s", "max_uses": rolloutHosts + 1,
	}, &join); err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(dir, "secrets", "join.token")
	fixture.WriteFile(t, tokenFile, join.Token+"\n", 0o600)
	common := fmt.Sprintf(agentCommon, grpcAddr, join.CACertSHA256, tokenFile)
	for _, h := range env.hosts {
		cfg := common + fmt.Sprintf(webAgentConfig, filepath.Join(dir, h.name), h.name, h.address,
			h.url(env.port)+"health", registry, h.container)
		path := filepath.Join(dir, h.name+".yaml")
		fixture.WriteFile(t, path, cfg, 0o600)
		if h == env.hosts[0] {
			t.Logf("agent configuration of %s:\n%s", h.name, cfg)
		}
		start(env.top, "agent "+h.name, agentBin, nil, "-config", path)
	}
	lbCfg := common + fmt.Sprintf(lbAgentConfig, filepath.Join(dir, "e2e-lb-1"), env.nginx.Binary, env.nginx.ConfigFile,
		rolloutUpstream, env.nginx.UpstreamFile(rolloutUpstream))
	lbPath := filepath.Join(dir, "e2e-lb-1.yaml")
	fixture.WriteFile(t, lbPath, lbCfg, 0o600)
	t.Logf("agent configuration of e2e-lb-1:\n%s", lbCfg)
	start(env.top, "agent e2e-lb-1", agentBin, nil, "-config", lbPath)
	env.waitFleet(t)
}

// waitFleet waits until the load balancer is connected and every
// application host is connected, healthy and reports "web" on v1.
func (env *rolloutEnv) waitFleet(t *testing.T) {
	t.Helper()
	eventually(t, 30*time.Second, "the four agents to connect and report", func() error {
		var list struct {
			Agents []fleetAgentJSON `json:"agents"`
		}
		if err := env.g.call("flotilla.v1.FleetService/ListAgents", map[string]any{"selector": "env=e2e"}, &list); err != nil {
			return err
		}
		byName := map[string]fleetAgentJSON{}
		for _, a := range list.Agents {
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
			i := slices.IndexFunc(a.LastHeartbeat.Containers, func(c managedContainerJSON) bool { return c.Name == rolloutContainer })
			if i < 0 || a.LastHeartbeat.Containers[i].Image != env.images["v1"] {
				return fmt.Errorf("%s reports containers %+v, want %s on v1", h.name, a.LastHeartbeat.Containers, rolloutContainer)
			}
			h.agentID = a.ID
		}
		return nil
	})
}

// host returns the application host of an agent ID.
func (env *rolloutEnv) host(t *testing.T, agentID string) *appHost {
	t.Helper()
	for _, h := range env.hosts {
		if h.agentID == agentID {
			return h
		}
	}
	t.Fatalf("agent %s is not an application host", agentID)
	return nil
}

// agentCommon is the start of every agent's configuration.
const agentCommon = `control_plane:
  address: %[1]s
  ca_sha256: %[2]s
join_token_file: %[3]s
heartbeat_interval: 1s
log:
  format: console
`

// webAgentConfig is the rest of an application host's configuration: its
// container is managed by name, and is the service's "web" on this host.
const webAgentConfig = `state_dir: %[1]s
hostname: %[2]s
labels:
  role: web
  address: %[3]s
health:
  url: %[4]s
  timeout: 2s
docker:
  allowed_registries: [%[5]s]
  managed_containers: [%[6]s]
  container_names:
    web: %[6]s
  stop_timeout: 5s
  start_grace_period: 1s
`

// lbAgentConfig is the rest of the load balancer's configuration.
const lbAgentConfig = `state_dir: %[1]s
hostname: e2e-lb-1
labels:
  role: lb
nginx:
  binary: %[2]s
  config_file: %[3]s
  upstreams:
    %[4]s:
      file: %[5]s
      block: %[4]s
`
