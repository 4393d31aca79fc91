package fleet

import (
	"crypto/rand"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

	"flotilla.dev/e2e/internal/fixture"
	"flotilla.dev/e2e/internal/grpcurl"
	"flotilla.dev/e2e/internal/rollouttest"
)

// The application's port, and the load balancer's hostname.
const (
	appPort    = 8080
	lbHostname = "lb-1"
)

// rolloutFleet is the fleet of startFleet's kind with what rollouts need
// around it: a registry with the application's releases, application
// containers at static addresses on the network (a re-created container
// keeps its address, as a host's would), Nginx in front of them and an
// agent in the load-balancer role.
type rolloutFleet struct {
	*fleet
	images map[string]string // version → reference in the registry
	nginx  *fixture.Nginx
	// agentIDs are the agent IDs by hostname, the load balancer's included.
	agentIDs map[string]string
	// addrs are the application containers' addresses by hostname.
	addrs map[string]string
}

// The rollout scenarios' view of the fleet (rollouttest.Fleet).

func (f *rolloutFleet) API() grpcurl.Client       { return f.g }
func (f *rolloutFleet) Docker() *fixture.Docker   { return f.e.Docker }
func (f *rolloutFleet) Nginx() *fixture.Nginx     { return f.nginx }
func (f *rolloutFleet) Images() map[string]string { return f.images }

func (f *rolloutFleet) AppHosts() []rollouttest.Host {
	var out []rollouttest.Host
	for _, h := range f.hosts {
		out = append(out, rollouttest.Host{Name: h.name, AgentID: f.agentIDs[h.name], Container: h.app,
			Server: fmt.Sprintf("%s:%d", f.addrs[h.name], appPort)})
	}
	return out
}

// startRolloutFleet starts the control plane, the registry holding v1, v2
// and the unhealthy v3, five hosts whose applications run v1 pulled from
// it, Nginx and the load balancer's agent, and waits until every agent is
// connected and every application healthy on v1.
func startRolloutFleet(t *testing.T) *rolloutFleet {
	t.Helper()
	return startRolloutFleetWith(t, nil)
}

// startRolloutFleetWith is startRolloutFleet with app adjusting host i's
// application container (its environment, its memory limit) before it
// starts; nil adjusts nothing.
func startRolloutFleetWith(t *testing.T, app func(i int, s *containerSpec)) *rolloutFleet {
	t.Helper()
	base, grpcurlBin := newFleet(t)
	agentBin := fixture.Binary(t, "flotilla-agent")
	f := &rolloutFleet{fleet: base, agentIDs: map[string]string{}, addrs: map[string]string{}}
	reg := fixture.StartRegistry(t)
	f.images = fixture.BuildAppImages(t, f.e.Docker, reg, "v1", "v2", fixture.VersionUnhealthy)
	// The engine, on the host, pulls from the registry on the host's
	// loopback for the containers: that is what makes the registry usable
	// from agents in containers.
	f.e.Pull(t, f.images["v1"])

	subnet := f.createSubnetNetwork(t)
	f.startControlPlane(t, grpcurlBin)
	join := f.createJoinToken(t, fleetSize+1)
	dir := t.TempDir()
	var servers []string
	for i := 1; i <= fleetSize; i++ {
		a := subnet.Addr().As4()
		a[3] = byte(10 + i)
		ip := netip.AddrFrom4(a)
		h := f.startAppHost(t, dir, i, ip, reg.Addr, join, app)
		f.hosts = append(f.hosts, h)
		f.addrs[h.name] = ip.String()
		servers = append(servers, fmt.Sprintf("%s:%d", ip, appPort))
	}
	for _, s := range servers {
		fixture.Eventually(t, 20*time.Second, "the application at "+s+" to answer v1", func() error {
			body, err := fixture.Get("http://" + s + "/")
			if err == nil && body != "v1" {
				err = fmt.Errorf("answers %q", body)
			}
			return err
		})
	}
	f.nginx = fixture.StartNginx(t, fixture.Upstream{Name: rollouttest.Upstream, Servers: servers})
	f.startLoadBalancerAgent(t, dir, agentBin, join)
	f.waitRolloutFleet(t)
	return f
}

// createSubnetNetwork creates the private network with a subnet of its
// own, which static addresses need, and returns the subnet. It tries a
// few random /24s of 10.0.0.0/8, in case one is taken.
func (f *rolloutFleet) createSubnetNetwork(t *testing.T) netip.Prefix {
	t.Helper()
	f.network = f.e.Name("net")
	var lastErr error
	for range 8 {
		b := make([]byte, 2)
		_, _ = rand.Read(b)
		subnet := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 200 + b[0]%50, b[1], 0}), 24)
		ctx, cancel := f.e.ctx()
		_, err := f.e.Client.NetworkCreate(ctx, f.network, client.NetworkCreateOptions{
			Driver: "bridge", Labels: f.e.Labels(nil),
			IPAM: &network.IPAM{Config: []network.IPAMConfig{{Subnet: subnet}}},
		})
		cancel()
		if err == nil {
			return subnet
		}
		lastErr = err
	}
	t.Fatalf("create network %s with a subnet of its own: %v", f.network, lastErr)
	return netip.Prefix{}
}

// startAppHost starts host i: its application container on v1 at ip, then
// its agent, which may pull from the registry and labels itself with the
// application's address for the upstream.
func (f *rolloutFleet) startAppHost(t *testing.T, dir string, i int, ip netip.Addr, registry string, join grpcurl.JoinToken,
	adjust func(int, *containerSpec)) host {
	t.Helper()
	h := host{name: fmt.Sprintf("host-%d", i), app: f.e.Name(fmt.Sprintf("app-%d", i))}
	app := containerSpec{name: h.app, image: f.images["v1"], network: f.network, ipv4: ip}
	if adjust != nil {
		adjust(i, &app)
	}
	f.e.run(t, app)

	cfg := filepath.Join(dir, h.name, "agent.yaml")
	fixture.WriteFile(t, cfg, rolloutAgentYAML(h.app, registry), 0o644)
	state := f.e.Name(h.name + "-state")
	f.e.createVolume(t, state)
	h.agentID = f.e.run(t, containerSpec{
		name: f.e.Name("agent-" + h.name), image: agentImage, network: f.network,
		cmd: []string{"-config", agentConfig},
		// Labels cannot hold ':'; the service's server_port adds the port.
		env: agentEnv(join, h.name, "role=web,address="+ip.String()),
		binds: []string{
			state + ":" + agentVolume,
			"/var/run/docker.sock:/var/run/docker.sock",
			cfg + ":" + agentConfig + ":ro",
		},
	})
	return h
}

// rolloutAgentYAML is an application host's configuration: its container
// is "web" to commands, checked by network name, and its releases come
// from the test registry only.
func rolloutAgentYAML(app, registry string) string {
	return "# One application host of the e2e fleet.\n" +
		rollouttest.AppHostYAML(fmt.Sprintf("http://%s:%d/health", app, appPort), registry, app)
}

// startLoadBalancerAgent runs the load balancer's agent as a process on
// the host, with the real flotilla-agent binary: Nginx is the one from
// Debian installed on the load-balancer host, which the agent reloads
// there, and the agent image (FROM scratch) has no Nginx in it.
func (f *rolloutFleet) startLoadBalancerAgent(t *testing.T, dir, bin string, join grpcurl.JoinToken) {
	t.Helper()
	tokenFile := filepath.Join(dir, lbHostname, "join.token")
	fixture.WriteFile(t, tokenFile, join.Token+"\n", 0o600)
	cfg := rollouttest.LoadBalancerYAML([]string{f.g.Addr}, join, tokenFile, filepath.Join(dir, lbHostname, "state"), lbHostname, f.nginx)
	path := filepath.Join(dir, lbHostname, "agent.yaml")
	fixture.WriteFile(t, path, cfg, 0o600)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- nginx error log ---\n%s", f.nginx.ErrorLog(t))
		}
	})
	fixture.StartProcess(t, "agent "+lbHostname+" (host process)", bin, nil, "-config", path)
}

// waitRolloutFleet waits until the load balancer and the five hosts are
// connected, each host healthy and running v1, and records their IDs.
func (f *rolloutFleet) waitRolloutFleet(t *testing.T) {
	t.Helper()
	fixture.Eventually(t, 60*time.Second, "the load balancer and five healthy hosts on v1", func() error {
		list, err := f.g.ListAgents(selector)
		if err != nil {
			return err
		}
		if len(list) != fleetSize+1 {
			return fmt.Errorf("%d agents match %s, want %d", len(list), selector, fleetSize+1)
		}
		for _, a := range list {
			if a.Hostname == lbHostname {
				if a.State != "AGENT_STATE_CONNECTED" || a.Labels["role"] != "lb" {
					return fmt.Errorf("load balancer: state %s labels %v", a.State, a.Labels)
				}
				f.agentIDs[a.Hostname] = a.ID
				continue
			}
			if err := ready(a); err != nil {
				return fmt.Errorf("%s: %v", a.Hostname, err)
			}
			if a.Containers[0].Image != f.images["v1"] || a.Labels["address"] != f.addrs[a.Hostname] {
				return fmt.Errorf("%s runs %s with labels %v, want %s at %s", a.Hostname, a.Containers[0].Image, a.Labels,
					f.images["v1"], f.addrs[a.Hostname])
			}
			f.agentIDs[a.Hostname] = a.ID
		}
		return nil
	})
}

// hostOf returns the host of an agent ID.
func (f *rolloutFleet) hostOf(t *testing.T, agentID string) host {
	t.Helper()
	i := slices.IndexFunc(f.hosts, func(h host) bool { return f.agentIDs[h.name] == agentID })
	if i < 0 {
		t.Fatalf("agent %s is not an application host", agentID)
	}
	return f.hosts[i]
}
