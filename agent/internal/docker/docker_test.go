package docker

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"flotilla.dev/agent/internal/executor"
	flotillav1 "flotilla.dev/gen/flotilla/v1"
)

func TestPullReportsProgressAndIdentifiesImage(t *testing.T) {
	fx := requireDocker(t)
	e := newTestExecutor(t, fx, nil)
	ctx := testContext(t)
	ref := fx.image("v1")
	if err := fx.removeImage(ctx, ref); err != nil {
		t.Fatal(err)
	}

	var progress progressLog
	res, err := e.Execute(ctx, pullSpec(ref), progress.add)
	if err != nil {
		t.Fatalf("pull: %v", err)
	}
	reports := progress.all()
	withBytes := slices.ContainsFunc(reports, func(p *flotillav1.CommandProgress) bool { return p.Total > 0 && p.Current <= p.Total })
	// The image's layer may already be on the engine through another tag
	// of the fixture (v2 shares it): then the engine downloads nothing and
	// has no byte counts to give, but it still reports every layer.
	layerShared := slices.ContainsFunc(reports, func(p *flotillav1.CommandProgress) bool {
		return strings.Contains(p.GetMessage(), "Already exists")
	})
	if len(reports) == 0 || (!withBytes && !layerShared) {
		t.Errorf("no progress report with byte counts among %v", reports)
	}

	img, err := fx.docker.ImageInspect(ctx, ref)
	if err != nil {
		t.Fatalf("inspect the pulled image: %v", err)
	}
	p := res.GetPull()
	if p.GetImage() != ref || p.GetImageId() != img.ID {
		t.Errorf("result image %q id %q, want %q id %q", p.GetImage(), p.GetImageId(), ref, img.ID)
	}
	if !slices.Contains(img.RepoDigests, p.GetRepoDigest()) || !strings.HasPrefix(p.GetRepoDigest(), fx.registry+"/"+testImageRepo+"@sha256:") {
		t.Errorf("repo digest %q, want one of %v", p.GetRepoDigest(), img.RepoDigests)
	}
}

func TestPullOfMissingTagFails(t *testing.T) {
	fx := requireDocker(t)
	e := newTestExecutor(t, fx, nil)
	_, err := e.Execute(testContext(t), pullSpec(fx.image("no-such-tag")), nil)
	if err == nil || executor.IsRejection(err) {
		t.Fatalf("pull of a missing tag: got %v, want a failure", err)
	}
	t.Logf("pull of a missing tag: %v", err)
	if !strings.Contains(err.Error(), "no-such-tag") {
		t.Errorf("error %q does not name the image", err)
	}
}

// TestPullStreamErrorFails pulls an image whose config blob the registry
// lost: the engine starts the pull and reports the error in its stream.
func TestPullStreamErrorFails(t *testing.T) {
	fx := requireDocker(t)
	e := newTestExecutor(t, fx, nil)
	var progress progressLog
	_, err := e.Execute(testContext(t), pullSpec(fx.image("broken")), progress.add)
	if err == nil || executor.IsRejection(err) {
		t.Fatalf("pull of a broken image: got %v, want a failure", err)
	}
	t.Logf("pull of a broken image: %v", err)
	if !strings.Contains(err.Error(), "pull "+fx.image("broken")+" failed") {
		t.Errorf("error %q does not come from the progress stream", err)
	}
	for _, p := range progress.all() {
		if strings.HasPrefix(p.GetMessage(), "pulled ") {
			t.Errorf("a failed pull reported %q", p.GetMessage())
		}
	}
}

// TestPullCancelReturnsPromptly pulls from a "registry" that accepts
// connections and never answers, and cancels once the engine connected.
func TestPullCancelReturnsPromptly(t *testing.T) {
	fx := requireDocker(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan struct{})
	var conns []net.Conn
	var mu sync.Mutex
	go func() {
		var once sync.Once
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			once.Do(func() { close(accepted) })
		}
	}()
	t.Cleanup(func() {
		_ = l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	hang := l.Addr().String()
	e := newTestExecutor(t, fx, func(c *Config) { c.AllowedRegistries = append(c.AllowedRegistries, hang) })

	ctx, cancel := context.WithCancel(testContext(t))
	done := make(chan error, 1)
	go func() {
		_, err := e.Execute(ctx, pullSpec(hang+"/"+testImageRepo+":v1"), nil)
		done <- err
	}()
	select {
	case <-accepted:
	case err := <-done:
		t.Fatalf("pull ended before the engine reached the registry: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("the engine never connected to the registry")
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled pull: got %v, want context.Canceled", err)
		}
		t.Logf("cancelled pull: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("pull did not return after cancel")
	}
}

func TestRestartWithNewImageKeepsConfiguration(t *testing.T) {
	fx := requireDocker(t)
	e := newTestExecutor(t, fx, nil)
	ctx := testContext(t)
	v1, v2 := pull(t, e, fx.image("v1")), pull(t, e, fx.image("v2"))
	netA, netB := fx.createNetwork(t, "upgrade-a"), fx.createNetwork(t, "upgrade-b")
	vol := fx.createVolume(t, "upgrade-data")
	a := fx.createApp(t, "upgrade", appSpec{
		image: fx.image("v1"), managed: true, start: true,
		labels:   map[string]string{"app.role": "web"},
		env:      []string{"GREETING=hello"},
		networks: []testNetwork{{netA, "app-alias"}, {netB, "app-alias-b"}},
		binds:    []string{vol + ":/data"},
		volumes:  []string{"/cache"},
	})
	waitBody(t, a.url("/"), "v1")
	before := fx.inspect(t, a.name)

	var progress progressLog
	res, err := e.Execute(ctx, restartSpec(a.name, fx.image("v2")), progress.add)
	if err != nil {
		t.Fatalf("restart: %v", err)
	}
	waitBody(t, a.url("/"), "v2")

	r := res.GetRestart()
	after := fx.inspect(t, a.name)
	if r.GetContainer() != a.name || r.GetContainerId() != after.ID || r.GetPreviousContainerId() != a.id || after.ID == a.id {
		t.Errorf("result containers %q %q (previous %q); want %q, new ID %q, previous %q", r.GetContainer(), r.GetContainerId(), r.GetPreviousContainerId(), a.name, after.ID, a.id)
	}
	if r.GetImage() != fx.image("v2") || r.GetImageId() != v2.GetImageId() || r.GetPreviousImage() != fx.image("v1") || r.GetPreviousImageId() != v1.GetImageId() {
		t.Errorf("result images %q %q (previous %q %q)", r.GetImage(), r.GetImageId(), r.GetPreviousImage(), r.GetPreviousImageId())
	}
	var prev container.InspectResponse
	if err := json.Unmarshal(r.GetPreviousConfigJson(), &prev); err != nil || prev.Config == nil || !slices.Contains(prev.Config.Env, "GREETING=hello") || prev.HostConfig == nil || prev.NetworkSettings == nil {
		t.Errorf("previous_config_json does not hold the old configuration (%v): %s", err, r.GetPreviousConfigJson())
	}
	if len(progress.all()) == 0 {
		t.Error("no progress reported")
	}

	if after.Config.Hostname != shortID(after.ID) {
		t.Errorf("hostname %q, want the new container's own %q", after.Config.Hostname, shortID(after.ID))
	}
	checkEnv(t, after.Config.Env, []string{"GREETING=hello", "APP_VERSION=v2"}, []string{"APP_VERSION=v1"})
	wantLabels := map[string]string{
		"app.role": "web", "flotilla.managed": "true", testLabel: fx.runID,
		LabelPreviousImage: fx.image("v1"), "org.opencontainers.image.version": "v2",
	}
	for k, v := range wantLabels {
		if after.Config.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, after.Config.Labels[k], v)
		}
	}
	if !equalJSON(before.HostConfig.PortBindings, after.HostConfig.PortBindings) {
		t.Errorf("port bindings %v, want %v", after.HostConfig.PortBindings, before.HostConfig.PortBindings)
	}
	if after.HostConfig.RestartPolicy != before.HostConfig.RestartPolicy || after.HostConfig.NetworkMode != before.HostConfig.NetworkMode {
		t.Errorf("restart policy %v network mode %v, want %v %v", after.HostConfig.RestartPolicy, after.HostConfig.NetworkMode, before.HostConfig.RestartPolicy, before.HostConfig.NetworkMode)
	}
	for net, alias := range map[string]string{netA: "app-alias", netB: "app-alias-b"} {
		ep := after.NetworkSettings.Networks[net]
		if ep == nil || !slices.Contains(ep.Aliases, alias) {
			t.Errorf("network %s: endpoint %+v, want alias %q", net, ep, alias)
		}
	}
	checkMounts(t, before, after, "/data", "/cache")

	if fx.exists(t, a.name+oldSuffix) {
		t.Errorf("the old container is still there as %s", a.name+oldSuffix)
	}
	if _, err := fx.docker.ContainerInspect(ctx, a.id, client.ContainerInspectOptions{}); err == nil {
		t.Errorf("the old container %s was not removed", shortID(a.id))
	}
}

func checkEnv(t *testing.T, env, want, notWant []string) {
	t.Helper()
	for _, kv := range want {
		if !slices.Contains(env, kv) {
			t.Errorf("env %v lacks %s", env, kv)
		}
	}
	for _, kv := range notWant {
		if slices.Contains(env, kv) {
			t.Errorf("env %v still has %s", env, kv)
		}
	}
}

// checkMounts checks that after mounts the same volumes as before at dests.
func checkMounts(t *testing.T, before, after container.InspectResponse, dests ...string) {
	t.Helper()
	volumeAt := func(c container.InspectResponse, dest string) string {
		for _, m := range c.Mounts {
			if m.Destination == dest {
				return m.Name
			}
		}
		return ""
	}
	for _, d := range dests {
		if b, a := volumeAt(before, d), volumeAt(after, d); b == "" || a != b {
			t.Errorf("volume at %s: %q after, %q before", d, a, b)
		}
	}
}

func equalJSON(a, b any) bool {
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && string(ja) == string(jb)
}

func TestRestartToCrashingImageRestoresOld(t *testing.T) {
	fx := requireDocker(t)
	e := newTestExecutor(t, fx, nil)
	pull(t, e, fx.image("v1"))
	pull(t, e, fx.image("crash"))
	a := fx.createApp(t, "crash", appSpec{image: fx.image("v1"), managed: true, start: true})
	waitBody(t, a.url("/"), "v1")

	_, err := e.Execute(testContext(t), restartSpec(a.name, fx.image("crash")), nil)
	if err == nil || executor.IsRejection(err) {
		t.Fatalf("restart to the crashing image: got %v, want a failure", err)
	}
	t.Logf("restart to the crashing image: %v", err)
	for _, want := range []string{"exit code 1", "APP_MODE=crash", "restored and is running"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	assertRestored(t, fx, a)
}

// TestRestartCancelledAfterStopRestoresOld cancels the command once the
// new container started: the rollback must still run to completion.
func TestRestartCancelledAfterStopRestoresOld(t *testing.T) {
	fx := requireDocker(t)
	e := newTestExecutor(t, fx, func(c *Config) { c.StartGracePeriod = 30 * time.Second })
	pull(t, e, fx.image("v1"))
	pull(t, e, fx.image("v2"))
	a := fx.createApp(t, "cancel", appSpec{image: fx.image("v1"), managed: true, start: true})
	waitBody(t, a.url("/"), "v1")

	ctx, cancel := context.WithCancel(testContext(t))
	defer cancel()
	cancelOnStart := func(p *flotillav1.CommandProgress) {
		if strings.Contains(p.GetMessage(), "stays running") {
			cancel()
		}
	}
	_, err := e.Execute(ctx, restartSpec(a.name, fx.image("v2")), cancelOnStart)
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "restored") {
		t.Fatalf("cancelled restart: got %v, want context.Canceled and the old container restored", err)
	}
	t.Logf("cancelled restart: %v", err)
	assertRestored(t, fx, a)
}

// assertRestored checks that a's original container runs under its name
// and serves v1, with no replacement or set-aside copy left.
func assertRestored(t *testing.T, fx *fixture, a app) {
	t.Helper()
	c := fx.inspect(t, a.name)
	if c.ID != a.id || c.State == nil || !c.State.Running {
		t.Fatalf("container %s is %s (running %v), want the original %s running", a.name, shortID(c.ID), c.State != nil && c.State.Running, shortID(a.id))
	}
	waitBody(t, a.url("/"), "v1")
	if fx.exists(t, a.name+oldSuffix) {
		t.Errorf("%s is left over", a.name+oldSuffix)
	}
	list, err := fx.docker.ContainerList(testContext(t), client.ContainerListOptions{All: true, Filters: make(client.Filters).Add("label", testLabel+"="+fx.runID)})
	if err != nil {
		t.Fatal(err)
	}
	for _, item := range list.Items {
		if item.ID != a.id && slices.ContainsFunc(item.Names, func(n string) bool { return strings.HasPrefix(n, "/"+a.name) }) {
			t.Errorf("container %v (%s) is left over", item.Names, shortID(item.ID))
		}
	}
}

func TestPlainRestart(t *testing.T) {
	fx := requireDocker(t)
	e := newTestExecutor(t, fx, nil)
	v1 := pull(t, e, fx.image("v1"))
	a := fx.createApp(t, "plain", appSpec{image: fx.image("v1"), managed: true, start: true})
	waitBody(t, a.url("/"), "v1")
	before := fx.inspect(t, a.name)

	res, err := e.Execute(testContext(t), restartSpec(a.name, ""), nil)
	if err != nil {
		t.Fatalf("plain restart: %v", err)
	}
	after := fx.inspect(t, a.name)
	if after.ID != a.id || after.State.StartedAt == before.State.StartedAt || !after.State.Running {
		t.Errorf("after the restart: id %s started %s running %v; before: started %s", shortID(after.ID), after.State.StartedAt, after.State.Running, before.State.StartedAt)
	}
	r := res.GetRestart()
	if r.GetContainerId() != a.id || r.GetPreviousContainerId() != a.id || r.GetImageId() != v1.GetImageId() || r.GetImage() != fx.image("v1") {
		t.Errorf("result %+v", r)
	}
	waitBody(t, a.url("/"), "v1")
}

func TestRestartGuardRails(t *testing.T) {
	fx := requireDocker(t)
	setup := newTestExecutor(t, fx, nil)
	pull(t, setup, fx.image("v1"))
	unmanaged := fx.createApp(t, "unmanaged", appSpec{image: fx.image("v1"), start: true})
	listed := fx.createApp(t, "listed", appSpec{image: fx.image("v1"), start: true})
	managed := fx.createApp(t, "notpulled", appSpec{image: fx.image("v1"), managed: true, start: true})
	e := newTestExecutor(t, fx, func(c *Config) { c.ManagedContainers = []string{listed.name} })
	ctx := testContext(t)
	if err := fx.removeImage(ctx, fx.image("v2")); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name, container, image string
		wantRejection          bool
		wantErr                string
	}{
		{"unmanaged container", unmanaged.name, "", true, "is not managed"},
		{"unmanaged container with image", unmanaged.name, fx.image("v1"), true, "is not managed"},
		{"container listed by name", listed.name, "", false, ""},
		{"missing container", "flotilla-test-" + fx.runID + "-nothere", "", false, "does not exist"},
		{"image not present", managed.name, fx.image("v2"), false, "is not present; pull it first"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			startedAt := ""
			if fx.exists(t, tt.container) {
				startedAt = fx.inspect(t, tt.container).State.StartedAt
			}
			_, err := e.Execute(ctx, restartSpec(tt.container, tt.image), nil)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("got %v, want success", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("got %v, want an error saying %q", err, tt.wantErr)
			case err != nil && executor.IsRejection(err) != tt.wantRejection:
				t.Fatalf("rejection %v, want %v (%v)", executor.IsRejection(err), tt.wantRejection, err)
			}
			if tt.wantErr != "" && startedAt != "" {
				if c := fx.inspect(t, tt.container); c.State.StartedAt != startedAt || !c.State.Running {
					t.Errorf("a refused restart touched the container (started %s, was %s)", c.State.StartedAt, startedAt)
				}
			}
		})
	}
}

func TestManagedContainers(t *testing.T) {
	fx := requireDocker(t)
	setup := newTestExecutor(t, fx, nil)
	v1 := pull(t, setup, fx.image("v1"))
	byLabel := fx.createApp(t, "list-label", appSpec{image: fx.image("v1"), managed: true, start: true})
	byName := fx.createApp(t, "list-name", appSpec{image: fx.image("v1")})
	other := fx.createApp(t, "list-other", appSpec{image: fx.image("v1")})
	e := newTestExecutor(t, fx, func(c *Config) { c.ManagedContainers = []string{byName.name} })

	list, err := e.ManagedContainers(testContext(t))
	if err != nil {
		t.Fatalf("ManagedContainers: %v", err)
	}
	got := map[string]*flotillav1.ManagedContainer{}
	for _, c := range list {
		got[c.GetName()] = c
	}
	for _, want := range []struct {
		a     app
		state string
	}{{byLabel, "running"}, {byName, "created"}} {
		c := got[want.a.name]
		if c == nil {
			t.Errorf("%s is not listed", want.a.name)
			continue
		}
		if c.GetContainerId() != want.a.id || c.GetImage() != fx.image("v1") || c.GetImageId() != v1.GetImageId() || c.GetState() != want.state {
			t.Errorf("%s listed as %+v", want.a.name, c)
		}
	}
	if got[other.name] != nil {
		t.Errorf("unmanaged %s is listed", other.name)
	}
	if err := e.Ping(testContext(t)); err != nil {
		t.Errorf("Ping: %v", err)
	}
}

// TestConcurrentRestartsOfOneContainerAreSerialized starts two re-creates
// of the same container at once: without the per-name lock the second
// would trip over the first's set-aside copy or its new container.
func TestConcurrentRestartsOfOneContainerAreSerialized(t *testing.T) {
	fx := requireDocker(t)
	e := newTestExecutor(t, fx, nil)
	pull(t, e, fx.image("v1"))
	pull(t, e, fx.image("v2"))
	a := fx.createApp(t, "concurrent", appSpec{image: fx.image("v1"), managed: true, start: true})
	waitBody(t, a.url("/"), "v1")

	ctx := testContext(t)
	results := make(chan *flotillav1.RestartResult, 2)
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			res, err := e.Execute(ctx, restartSpec(a.name, fx.image("v2")), nil)
			if err != nil {
				t.Errorf("concurrent restart: %v", err)
				return
			}
			results <- res.GetRestart()
		})
	}
	wg.Wait()
	close(results)
	var previous []string
	for r := range results {
		previous = append(previous, r.GetPreviousContainerId())
	}
	if len(previous) != 2 || !slices.Contains(previous, a.id) || previous[0] == previous[1] {
		t.Errorf("previous containers %v: want the original %s, then the first restart's", previous, shortID(a.id))
	}
	waitBody(t, a.url("/"), "v2")
}

// TestContainerNames restarts a container through its name in
// docker.container_names, as three agents sharing one engine do, and
// checks that the heartbeats' list reports it under that name.
func TestContainerNames(t *testing.T) {
	fx := requireDocker(t)
	setup := newTestExecutor(t, fx, nil)
	pull(t, setup, fx.image("v1"))
	v2 := pull(t, setup, fx.image("v2"))
	local := fx.createApp(t, "alias-host1", appSpec{image: fx.image("v1"), managed: true, start: true})
	shadowed := fx.createApp(t, "alias-shadowed", appSpec{image: fx.image("v1"), managed: true, start: true})
	unmanaged := fx.createApp(t, "alias-unmanaged", appSpec{image: fx.image("v1"), start: true})
	e := newTestExecutor(t, fx, func(c *Config) {
		c.ContainerNames = map[string]string{"web": local.name, shadowed.name: unmanaged.name}
	})
	waitBody(t, local.url("/"), "v1")

	list, err := e.ManagedContainers(testContext(t))
	if err != nil {
		t.Fatalf("ManagedContainers: %v", err)
	}
	got := map[string]*flotillav1.ManagedContainer{}
	for _, c := range list {
		got[c.GetName()] = c
	}
	if c := got["web"]; c == nil || c.GetContainerId() != local.id || c.GetImage() != fx.image("v1") {
		t.Errorf("web listed as %+v, want %s with v1", c, shortID(local.id))
	}
	for _, name := range []string{local.name, shadowed.name, unmanaged.name} {
		if got[name] != nil {
			t.Errorf("%s is listed under its own name: %+v", name, got[name])
		}
	}

	progress := &progressLog{}
	res, err := e.Execute(testContext(t), restartSpec("web", fx.image("v2")), progress.add)
	if err != nil {
		t.Fatalf("restart web: %v", err)
	}
	r := res.GetRestart()
	if r.GetContainer() != "web" || r.GetPreviousContainerId() != local.id || r.GetImageId() != v2.GetImageId() {
		t.Errorf("result %+v", r)
	}
	if c := fx.inspect(t, local.name); c.ID != r.GetContainerId() || c.Config.Image != fx.image("v2") {
		t.Errorf("%s is %s with %s, the result says %s", local.name, shortID(c.ID), c.Config.Image, shortID(r.GetContainerId()))
	}
	if msgs := progress.all(); len(msgs) == 0 || !strings.Contains(msgs[0].GetMessage(), local.name) {
		t.Errorf("first progress %v does not name the local container", msgs)
	}
	waitBody(t, local.url("/"), "v2")

	// The guard rails apply to the local container.
	before := fx.inspect(t, unmanaged.name).State.StartedAt
	_, err = e.Execute(testContext(t), restartSpec(shadowed.name, ""), nil)
	if !executor.IsRejection(err) || !strings.Contains(err.Error(), unmanaged.name+" is not managed") {
		t.Errorf("restart of a name mapped to an unmanaged container: %v, want a rejection naming %s", err, unmanaged.name)
	}
	if c := fx.inspect(t, unmanaged.name); c.State.StartedAt != before {
		t.Errorf("the refused restart touched %s", unmanaged.name)
	}
}
