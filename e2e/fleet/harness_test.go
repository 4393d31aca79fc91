package fleet

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"flotilla.dev/e2e/internal/fixture"
	"flotilla.dev/e2e/internal/grpcurl"
)

// The images under test, as `make images` tags them.
const (
	controlPlaneImage = "flotilla-controlplane:latest"
	agentImage        = "flotilla-agent:latest"
)

// Paths inside the images (Dockerfile.controlplane, Dockerfile.agent).
const (
	cpDataDir = "/var/lib/flotilla"
	// agentVolume is the agent image's volume; the image keeps its state
	// directory one level below it (Dockerfile.agent), because Docker
	// creates a volume's root 0755 and the agent refuses a state directory
	// others can read.
	agentVolume = "/var/lib/flotilla-agent"
	agentConfig = "/etc/flotilla/agent.yaml"
)

// agentLostAfter is short so that a killed agent is detected quickly.
const agentLostAfter = 5 * time.Second

// fleet is a running control plane and its hosts.
type fleet struct {
	e          engine
	network    string
	cpID       string
	g          grpcurl.Client
	metricsURL string
	hosts      []host
}

// host is one simulated machine: an agent container and the application
// container it manages (as "web").
type host struct {
	name    string // reported hostname, host-N
	agentID string // container ID of the agent
	app     string // name of the application container
}

// newFleet checks that the images under test and grpcurl are there (it
// skips, or fails under FLOTILLA_E2E=1, when they are not) and returns an
// empty fleet on the engine, whose logs are printed if the test fails.
func newFleet(t *testing.T) (f *fleet, grpcurlBin string) {
	t.Helper()
	grpcurlBin = fixture.Binary(t, "grpcurl")
	f = &fleet{e: engine{fixture.NewDocker(t)}}
	for _, img := range []string{controlPlaneImage, agentImage} {
		if !f.e.HasImage(t, img) {
			fixture.Require(t, "image %s is not in the engine: run `make images` (it builds both images FROM scratch)", img)
		}
	}
	// Registered after NewDocker's sweep, so it runs before it: the logs
	// are read while the containers still exist.
	t.Cleanup(func() {
		if t.Failed() {
			f.dumpLogs(t)
		}
	})
	return f, grpcurlBin
}

// startFleet starts the control plane and n hosts. It skips (fails under
// FLOTILLA_E2E=1) when Docker, the images or grpcurl are missing.
func startFleet(t *testing.T, n int) *fleet {
	t.Helper()
	f, grpcurlBin := newFleet(t)
	appImage := fixture.BuildLocalAppImage(t, f.e.Docker, "v1")
	f.network = f.e.Name("net")
	f.e.createNetwork(t, f.network)
	f.startControlPlane(t, grpcurlBin)
	join := f.createJoinToken(t, n)
	dir := t.TempDir()
	for i := 1; i <= n; i++ {
		f.hosts = append(f.hosts, f.startHost(t, dir, i, appImage, join))
	}
	return f
}

// startControlPlane runs the control plane with its data on a volume,
// reachable as "controlplane" on the network and on random loopback
// ports from the host, and waits until grpcurl gets an answer.
func (f *fleet) startControlPlane(t *testing.T, grpcurlBin string) {
	t.Helper()
	vol := f.e.Name("cp-data")
	f.e.createVolume(t, vol)
	f.cpID = f.e.run(t, containerSpec{
		name: f.e.Name("controlplane"), image: controlPlaneImage, network: f.network,
		aliases: []string{"controlplane"},
		cmd: []string{"-advertise-names", "controlplane", "-agent-lost-after", agentLostAfter.String(),
			"-log-format", "console"},
		binds: []string{vol + ":" + cpDataDir},
		// The gRPC port is fixed so that a restarted control plane keeps
		// its address, as a real one does: agents on the host dial it.
		ports:   map[string]int{"7443/tcp": fixture.FreePort(t)},
		publish: []string{"7090/tcp"},
	})
	f.g = grpcurl.Client{Path: grpcurlBin, Addr: f.e.hostPort(t, f.cpID, "7443/tcp")}
	f.metricsURL = "http://" + f.e.hostPort(t, f.cpID, "7090/tcp") + "/metrics"

	// The CA and the admin token appear on the volume at first start.
	ca := filepath.Join(t.TempDir(), "ca.crt")
	fixture.Eventually(t, 20*time.Second, "the control plane's CA and admin token on its volume", func() error {
		pem, err := f.e.copyFile(f.cpID, cpDataDir+"/ca.crt")
		if err != nil {
			return err
		}
		token, err := f.e.copyFile(f.cpID, cpDataDir+"/admin.token")
		if err != nil {
			return err
		}
		f.g.Token = strings.TrimSpace(string(token))
		return os.WriteFile(ca, pem, 0o600)
	})
	f.g.CAFile = ca
	fixture.Eventually(t, 20*time.Second, "the control plane to answer grpcurl", f.g.Serving)
}

// createJoinToken creates a token for uses registrations with env=e2e.
func (f *fleet) createJoinToken(t *testing.T, uses int) grpcurl.JoinToken {
	t.Helper()
	return f.g.CreateJoinToken(t, "e2e fleet", uses)
}

// startHost starts host i: its application container, then its agent,
// which registers from the join token in its environment as on a new
// EC2 instance.
func (f *fleet) startHost(t *testing.T, dir string, i int, appImage string, join grpcurl.JoinToken) host {
	t.Helper()
	h := host{name: fmt.Sprintf("host-%d", i), app: f.e.Name(fmt.Sprintf("app-%d", i))}
	// No flotilla.managed label: every agent sees the one engine, and each
	// must manage (and report) only its own application.
	f.e.run(t, containerSpec{name: h.app, image: appImage, network: f.network})

	cfg := filepath.Join(dir, h.name, "agent.yaml")
	fixture.WriteFile(t, cfg, agentYAML(h.app, f.e.Name("fleet")), 0o644)
	state := f.e.Name(h.name + "-state")
	f.e.createVolume(t, state)
	h.agentID = f.e.run(t, containerSpec{
		name: f.e.Name("agent-" + h.name), image: agentImage, network: f.network,
		cmd: []string{"-config", agentConfig},
		env: agentEnv(join, h.name, "role=web,address="+h.app),
		binds: []string{
			state + ":" + agentVolume,
			"/var/run/docker.sock:/var/run/docker.sock",
			cfg + ":" + agentConfig + ":ro",
		},
	})
	return h
}

// agentYAML is a host's agent configuration: its application container
// is "web" to commands, and its health is checked by network name. Its
// managed label is one no container carries (run names this fleet): the
// agents share the test machine's one engine with the other suites, whose
// containers carry the default flotilla.managed=true, and must manage and
// report their own application only.
func agentYAML(app, run string) string {
	return fmt.Sprintf(`# One host of the e2e fleet.
health:
  url: http://%[1]s:8080/health
docker:
  managed_label: flotilla.e2e-fleet=%[2]s
  managed_containers: [%[1]s]
  container_names:
    web: %[1]s
`, app, run)
}

// dumpLogs prints every fleet container's recent output.
func (f *fleet) dumpLogs(t *testing.T) {
	if f.cpID != "" {
		t.Logf("--- control plane ---\n%s", f.e.logs(f.cpID))
	}
	for _, h := range f.hosts {
		t.Logf("--- agent %s ---\n%s", h.name, f.e.logs(h.agentID))
	}
}

// agentEnv is a host agent's environment, as on EC2: where the control
// plane is, the join token and CA pin to register with, and the host's
// name and labels; heartbeats every second so the tests need not wait.
func agentEnv(join grpcurl.JoinToken, hostname, labels string) []string {
	return []string{
		"FLOTILLA_CONTROL_PLANE_ADDRESS=controlplane:7443",
		"FLOTILLA_JOIN_TOKEN=" + join.Token,
		"FLOTILLA_CONTROL_PLANE_CA_SHA256=" + join.CACertSHA256,
		"FLOTILLA_HOSTNAME=" + hostname,
		"FLOTILLA_LABELS=" + labels,
		"FLOTILLA_HEARTBEAT_INTERVAL=1s",
		"FLOTILLA_LOG_FORMAT=console",
	}
}
