package docker

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
	"go.uber.org/zap/zaptest"

	flotillav1 "flotilla.dev/gen/flotilla/v1"
)

// newTestExecutor is an Executor allowed to pull from the fixture's
// registry, with a short grace period; mutate adjusts its Config.
func newTestExecutor(t testing.TB, fx *fixture, mutate func(*Config)) *Executor {
	t.Helper()
	cfg := Config{StartGracePeriod: time.Second}
	if fx != nil {
		cfg.AllowedRegistries = []string{fx.registry}
	}
	if mutate != nil {
		mutate(&cfg)
	}
	e, err := New(cfg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = e.Close() })
	return e
}

// testContext is a bounded context for one test.
func testContext(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// progressLog collects progress reports; Progress may be called from any
// goroutine.
type progressLog struct {
	mu      sync.Mutex
	reports []*flotillav1.CommandProgress
}

func (p *progressLog) add(r *flotillav1.CommandProgress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.reports = append(p.reports, r)
}

func (p *progressLog) all() []*flotillav1.CommandProgress {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*flotillav1.CommandProgress(nil), p.reports...)
}

func pullSpec(image string) *flotillav1.CommandSpec {
	return &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Pull{Pull: &flotillav1.PullCommand{Image: image}}}
}

func restartSpec(name, image string) *flotillav1.CommandSpec {
	return &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Restart{Restart: &flotillav1.RestartCommand{Container: name, Image: image}}}
}

// pull pulls a test image through the executor.
func pull(t *testing.T, e *Executor, image string) *flotillav1.PullResult {
	t.Helper()
	res, err := e.Execute(testContext(t), pullSpec(image), nil)
	if err != nil {
		t.Fatalf("pull %s: %v", image, err)
	}
	return res.GetPull()
}

// appSpec describes a test application container.
type appSpec struct {
	image    string
	managed  bool
	labels   map[string]string
	env      []string
	networks []testNetwork // the first is the network mode
	binds    []string
	volumes  []string // anonymous volumes
	start    bool
}

type testNetwork struct{ name, alias string }

// app is a test application container.
type app struct {
	name     string
	id       string
	hostPort int
}

// url is the application's address on the host.
func (a app) url(path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", a.hostPort, path)
}

// createApp creates (and optionally starts) a test application container
// publishing 8080 on a free loopback port, and removes it, any copy set
// aside under its name and its anonymous volumes when the test ends.
func (fx *fixture) createApp(t *testing.T, suffix string, spec appSpec) app {
	t.Helper()
	ctx := testContext(t)
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	a := app{name: fmt.Sprintf("flotilla-test-%s-%s", fx.runID, suffix), hostPort: port}
	labels := fx.labels(spec.labels)
	if spec.managed {
		labels["flotilla.managed"] = "true"
	}
	cfg := &container.Config{Image: spec.image, Env: spec.env, Labels: labels, Volumes: map[string]struct{}{}}
	for _, v := range spec.volumes {
		cfg.Volumes[v] = struct{}{}
	}
	host := &container.HostConfig{
		PortBindings:  network.PortMap{network.MustParsePort("8080/tcp"): {{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: strconv.Itoa(port)}}},
		RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyUnlessStopped},
		Binds:         spec.binds,
	}
	var netCfg *network.NetworkingConfig
	if len(spec.networks) > 0 {
		n := spec.networks[0]
		host.NetworkMode = container.NetworkMode(n.name)
		netCfg = &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{n.name: {Aliases: []string{n.alias}}}}
	}
	t.Cleanup(func() { fx.removeApp(a.name) })
	created, err := fx.docker.ContainerCreate(ctx, client.ContainerCreateOptions{Name: a.name, Config: cfg, HostConfig: host, NetworkingConfig: netCfg})
	if err != nil {
		t.Fatalf("create container %s: %v", a.name, err)
	}
	a.id = created.ID
	for _, n := range spec.networks[min(1, len(spec.networks)):] {
		if _, err := fx.docker.NetworkConnect(ctx, n.name, client.NetworkConnectOptions{
			Container: a.id, EndpointConfig: &network.EndpointSettings{Aliases: []string{n.alias}},
		}); err != nil {
			t.Fatalf("connect %s to %s: %v", a.name, n.name, err)
		}
	}
	if spec.start {
		if _, err := fx.docker.ContainerStart(ctx, a.id, client.ContainerStartOptions{}); err != nil {
			t.Fatalf("start %s: %v", a.name, err)
		}
	}
	return a
}

// removeApp removes the containers called name and name.flotilla-old with
// their anonymous volumes (which a re-created container took over by name).
func (fx *fixture) removeApp(name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, n := range []string{name, name + oldSuffix, name + nextSuffix, name + previousSuffix} {
		c, err := fx.docker.ContainerInspect(ctx, n, client.ContainerInspectOptions{})
		if err != nil || strings.TrimPrefix(c.Container.Name, "/") != n || c.Container.Config.Labels[testLabel] != fx.runID {
			continue
		}
		_, _ = fx.docker.ContainerRemove(ctx, c.Container.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
		for _, m := range c.Container.Mounts {
			if m.Type == "volume" && len(m.Name) == 64 { // anonymous: a 64-hex name
				_, _ = fx.docker.VolumeRemove(ctx, m.Name, client.VolumeRemoveOptions{})
			}
		}
	}
}

// createNetwork creates a labelled bridge network removed at the end.
func (fx *fixture) createNetwork(t *testing.T, suffix string) string {
	t.Helper()
	name := fmt.Sprintf("flotilla-test-%s-%s", fx.runID, suffix)
	if _, err := fx.docker.NetworkCreate(testContext(t), name, client.NetworkCreateOptions{Driver: "bridge", Labels: fx.labels(nil)}); err != nil {
		t.Fatalf("create network %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, _ = fx.docker.NetworkRemove(ctx, name, client.NetworkRemoveOptions{})
	})
	return name
}

// createVolume creates a labelled named volume removed at the end.
func (fx *fixture) createVolume(t *testing.T, suffix string) string {
	t.Helper()
	name := fmt.Sprintf("flotilla-test-%s-%s", fx.runID, suffix)
	if _, err := fx.docker.VolumeCreate(testContext(t), client.VolumeCreateOptions{Name: name, Labels: fx.labels(nil)}); err != nil {
		t.Fatalf("create volume %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, _ = fx.docker.VolumeRemove(ctx, name, client.VolumeRemoveOptions{Force: true})
	})
	return name
}

// inspect inspects a container by name or ID.
func (fx *fixture) inspect(t *testing.T, nameOrID string) container.InspectResponse {
	t.Helper()
	c, err := fx.docker.ContainerInspect(testContext(t), nameOrID, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatalf("inspect %s: %v", nameOrID, err)
	}
	return c.Container
}

// exists reports whether a container called name exists.
func (fx *fixture) exists(t *testing.T, name string) bool {
	t.Helper()
	c, err := fx.docker.ContainerInspect(testContext(t), name, client.ContainerInspectOptions{})
	return err == nil && strings.TrimPrefix(c.Container.Name, "/") == name
}

// waitBody waits, bounded, until GET url answers 200 with body want.
func waitBody(t *testing.T, url, want string) {
	t.Helper()
	hc := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(20 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		resp, err := hc.Get(url)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			last = fmt.Sprintf("%d %q", resp.StatusCode, strings.TrimSpace(string(b)))
			if resp.StatusCode == http.StatusOK && strings.TrimSpace(string(b)) == want {
				return
			}
		} else {
			last = err.Error()
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("GET %s never answered %q; last: %s", url, want, last)
}
