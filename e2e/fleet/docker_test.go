package fleet

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

	"flotilla.dev/e2e/internal/fixture"
)

// engineTimeout bounds one call to the Docker engine.
const engineTimeout = time.Minute

// engine wraps the Docker fixture with what a fleet of containers needs:
// a private network, named volumes and containers attached to both.
type engine struct {
	*fixture.Docker
}

// ctx returns a context bounded by engineTimeout.
func (e engine) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), engineTimeout)
}

// createNetwork creates a bridge network carrying the run's label; the
// fixture's sweep removes it.
func (e engine) createNetwork(t *testing.T, name string) {
	t.Helper()
	ctx, cancel := e.ctx()
	defer cancel()
	if _, err := e.Client.NetworkCreate(ctx, name, client.NetworkCreateOptions{Driver: "bridge", Labels: e.Labels(nil)}); err != nil {
		t.Fatalf("create network %s: %v", name, err)
	}
}

// createVolume creates a named volume carrying the run's label.
func (e engine) createVolume(t *testing.T, name string) {
	t.Helper()
	ctx, cancel := e.ctx()
	defer cancel()
	if _, err := e.Client.VolumeCreate(ctx, client.VolumeCreateOptions{Name: name, Labels: e.Labels(nil)}); err != nil {
		t.Fatalf("create volume %s: %v", name, err)
	}
}

// containerSpec is a container of the fleet.
type containerSpec struct {
	name, image, network string
	// aliases are extra DNS names on the network.
	aliases []string
	cmd     []string
	env     []string
	// binds are "source:target[:ro]" (volume names or host paths).
	binds []string
	// publish are container ports ("7443/tcp") published on a random
	// 127.0.0.1 port.
	publish []string
	// ports are container ports published on a fixed 127.0.0.1 port, which
	// a restart of the container keeps.
	ports map[string]int
	// ipv4 is a static address on the network (which must have a subnet
	// of its own); the zero value lets Docker choose.
	ipv4 netip.Addr
	// memory is the container's memory limit, bytes, swap included (0:
	// none).
	memory int64
}

// run creates and starts a container and returns its ID.
func (e engine) run(t *testing.T, s containerSpec) string {
	t.Helper()
	ctx, cancel := e.ctx()
	defer cancel()
	host := &container.HostConfig{Binds: s.binds, NetworkMode: container.NetworkMode(s.network), PortBindings: network.PortMap{},
		Resources: container.Resources{Memory: s.memory, MemorySwap: s.memory}}
	for _, p := range s.publish {
		host.PortBindings[network.MustParsePort(p)] = []network.PortBinding{{HostIP: netip.MustParseAddr("127.0.0.1")}}
	}
	for p, port := range s.ports {
		host.PortBindings[network.MustParsePort(p)] = []network.PortBinding{{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: strconv.Itoa(port)}}
	}
	endpoint := &network.EndpointSettings{Aliases: s.aliases}
	if s.ipv4.IsValid() {
		endpoint.IPAMConfig = &network.EndpointIPAMConfig{IPv4Address: s.ipv4}
	}
	created, err := e.Client.ContainerCreate(ctx, client.ContainerCreateOptions{
		Name:       s.name,
		Config:     &container.Config{Image: s.image, Cmd: s.cmd, Env: s.env, Labels: e.Labels(nil)},
		HostConfig: host,
		NetworkingConfig: &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{
			s.network: endpoint,
		}},
	})
	if err != nil {
		t.Fatalf("create container %s: %v", s.name, err)
	}
	e.start(t, created.ID)
	return created.ID
}

// start starts an existing container.
func (e engine) start(t *testing.T, id string) {
	t.Helper()
	ctx, cancel := e.ctx()
	defer cancel()
	if _, err := e.Client.ContainerStart(ctx, id, client.ContainerStartOptions{}); err != nil {
		t.Fatalf("start container %s: %v", id, err)
	}
}

// kill sends SIGKILL to a container: no chance to say goodbye.
func (e engine) kill(t *testing.T, id string) {
	t.Helper()
	ctx, cancel := e.ctx()
	defer cancel()
	if _, err := e.Client.ContainerKill(ctx, id, client.ContainerKillOptions{Signal: "SIGKILL"}); err != nil {
		t.Fatalf("kill container %s: %v", id, err)
	}
}

// hostPort returns 127.0.0.1:<port> where the container's port p is
// published.
func (e engine) hostPort(t *testing.T, id, p string) string {
	t.Helper()
	c := e.Inspect(t, id)
	if c.NetworkSettings != nil {
		for _, b := range c.NetworkSettings.Ports[network.MustParsePort(p)] {
			if b.HostPort != "" {
				return "127.0.0.1:" + b.HostPort
			}
		}
	}
	t.Fatalf("container %s does not publish %s", id, p)
	return ""
}

// copyFile reads one regular file out of a container's filesystem (its
// volumes included) through the Engine API: the images have no shell to
// cat it with.
func (e engine) copyFile(id, path string) ([]byte, error) {
	ctx, cancel := e.ctx()
	defer cancel()
	res, err := e.Client.CopyFromContainer(ctx, id, client.CopyFromContainerOptions{SourcePath: path})
	if err != nil {
		return nil, fmt.Errorf("copy %s from container %s: %w", path, id, err)
	}
	defer res.Content.Close()
	tr := tar.NewReader(res.Content)
	for {
		h, err := tr.Next()
		if err != nil {
			return nil, fmt.Errorf("copy %s from container %s: no regular file in the archive: %w", path, id, err)
		}
		if h.Typeflag == tar.TypeReg {
			return io.ReadAll(tr)
		}
	}
}

// logs returns the last lines of a container's output, for failure reports.
func (e engine) logs(id string) string {
	ctx, cancel := e.ctx()
	defer cancel()
	rc, err := e.Client.ContainerLogs(ctx, id, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true, Tail: "4000"})
	if err != nil {
		return fmt.Sprintf("(logs of %s: %v)", id, err)
	}
	defer rc.Close()
	var out bytes.Buffer
	if _, err := stdcopy.StdCopy(&out, &out, rc); err != nil {
		fmt.Fprintf(&out, "(reading logs: %v)", err)
	}
	// Successful calls say nothing a failure report needs; the control
	// plane logs one per grpcurl poll.
	var kept []string
	for _, l := range strings.Split(out.String(), "\n") {
		if !strings.Contains(l, `"grpc.code": "OK"`) {
			kept = append(kept, l)
		}
	}
	return strings.Join(kept, "\n")
}
