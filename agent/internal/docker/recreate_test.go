package docker

import (
	"net/netip"
	"reflect"
	"slices"
	"testing"
	"time"

	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

const oldID = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// oldImageConfig is the image the old container ran.
func oldImageConfig() *dockerspec.DockerOCIImageConfig {
	return &dockerspec.DockerOCIImageConfig{
		ImageConfig: ocispec.ImageConfig{
			Env:          []string{"PATH=/usr/bin", "APP_VERSION=v1"},
			Entrypoint:   []string{"/app"},
			Cmd:          []string{"serve"},
			WorkingDir:   "/srv",
			User:         "app",
			Labels:       map[string]string{"org.opencontainers.image.version": "v1", "shared": "image"},
			ExposedPorts: map[string]struct{}{"8080/tcp": {}},
			Volumes:      map[string]struct{}{"/var/cache/app": {}},
			StopSignal:   "SIGTERM",
		},
		DockerOCIImageConfigExt: dockerspec.DockerOCIImageConfigExt{
			Healthcheck: &dockerspec.HealthcheckConfig{Test: []string{"CMD", "/app", "check"}, Interval: time.Second},
		},
	}
}

// oldContainer is the old container as the engine reports it: the image's
// defaults merged with its own settings.
func oldContainer() container.InspectResponse {
	img := oldImageConfig()
	return container.InspectResponse{
		ID: oldID,
		Config: &container.Config{
			Hostname:     oldID[:12],
			Image:        "registry.example.com/app:v1",
			Env:          append(slices.Clone(img.Env), "GREETING=hello"),
			Entrypoint:   img.Entrypoint,
			Cmd:          img.Cmd,
			WorkingDir:   img.WorkingDir,
			User:         img.User,
			Labels:       map[string]string{"org.opencontainers.image.version": "v1", "shared": "mine", "flotilla.managed": "true"},
			ExposedPorts: network.PortSet{network.MustParsePort("8080/tcp"): {}, network.MustParsePort("9090/tcp"): {}},
			Volumes:      map[string]struct{}{"/var/cache/app": {}, "/scratch": {}},
			StopSignal:   img.StopSignal,
			Healthcheck:  &container.HealthConfig{Test: []string{"CMD", "/app", "check"}, Interval: time.Second},
			OnBuild:      []string{"RUN true"},
		},
		HostConfig: &container.HostConfig{
			NetworkMode:   "front",
			Binds:         []string{"data:/data:rw"},
			Links:         []string{"/db:/web/database"},
			RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyAlways},
			PortBindings: network.PortMap{network.MustParsePort("8080/tcp"): {{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: "18080"}},
				network.MustParsePort("7070/tcp"): {{HostPort: "7070"}}},
		},
		Mounts: []container.MountPoint{
			{Type: mount.TypeVolume, Name: "data", Destination: "/data", RW: true},
			{Type: mount.TypeVolume, Name: "anon1", Destination: "/var/cache/app", RW: true},
			{Type: mount.TypeVolume, Name: "anon2", Destination: "/scratch", RW: false},
			{Type: mount.TypeBind, Source: "/etc/hosts", Destination: "/hosts"},
		},
		NetworkSettings: &container.NetworkSettings{Networks: map[string]*network.EndpointSettings{
			"front": {
				Aliases:    []string{"web", oldID[:12]},
				IPAMConfig: &network.EndpointIPAMConfig{IPv4Address: netip.MustParseAddr("172.30.0.10")},
				NetworkID:  "n1", IPAddress: netip.MustParseAddr("172.30.0.10"),
			},
			"back":   {Aliases: []string{"web-back"}, NetworkID: "n2", IPAddress: netip.MustParseAddr("172.31.0.3")},
			"bridge": {Aliases: []string{"ignored"}, NetworkID: "n3"},
		}},
	}
}

func TestPlanRecreateTakesOutOldImageDefaults(t *testing.T) {
	plan := planRecreate(oldContainer(), oldImageConfig(), "registry.example.com/app:v2")
	c := plan.config
	if c.Image != "registry.example.com/app:v2" {
		t.Errorf("image %q", c.Image)
	}
	if !reflect.DeepEqual(c.Env, []string{"GREETING=hello"}) {
		t.Errorf("env %v, want only the container's own", c.Env)
	}
	wantLabels := map[string]string{"shared": "mine", "flotilla.managed": "true", LabelPreviousImage: "registry.example.com/app:v1"}
	if !reflect.DeepEqual(c.Labels, wantLabels) {
		t.Errorf("labels %v, want %v", c.Labels, wantLabels)
	}
	if c.Entrypoint != nil || c.Cmd != nil || c.WorkingDir != "" || c.User != "" || c.StopSignal != "" || c.Healthcheck != nil || c.OnBuild != nil {
		t.Errorf("image defaults kept: entrypoint %v cmd %v workdir %q user %q stop signal %q healthcheck %v onbuild %v",
			c.Entrypoint, c.Cmd, c.WorkingDir, c.User, c.StopSignal, c.Healthcheck, c.OnBuild)
	}
	if c.Hostname != "" {
		t.Errorf("hostname %q: the old default hostname was kept", c.Hostname)
	}
	wantPorts := network.PortSet{network.MustParsePort("9090/tcp"): {}, network.MustParsePort("8080/tcp"): {}, network.MustParsePort("7070/tcp"): {}}
	if !reflect.DeepEqual(c.ExposedPorts, wantPorts) {
		t.Errorf("exposed ports %v, want %v", c.ExposedPorts, wantPorts)
	}
	if len(c.Volumes) != 0 {
		t.Errorf("volumes %v: anonymous volumes should move to mounts", c.Volumes)
	}
}

func TestPlanRecreateKeepsContainerSettings(t *testing.T) {
	old := oldContainer()
	old.Config.Hostname = "web-1"
	old.Config.Entrypoint = []string{"/bin/custom"}
	old.Config.Cmd = []string{"serve"} // the image's, but with an entrypoint of its own
	old.Config.User = "root"
	plan := planRecreate(old, oldImageConfig(), "app:v2")
	c := plan.config
	if c.Hostname != "web-1" || !slices.Equal(c.Entrypoint, []string{"/bin/custom"}) || !slices.Equal(c.Cmd, []string{"serve"}) || c.User != "root" {
		t.Errorf("own settings lost: hostname %q entrypoint %v cmd %v user %q", c.Hostname, c.Entrypoint, c.Cmd, c.User)
	}

	h := plan.host
	if h.RestartPolicy.Name != container.RestartPolicyAlways || h.NetworkMode != "front" || !reflect.DeepEqual(h.PortBindings, old.HostConfig.PortBindings) {
		t.Errorf("host config changed: %+v", h)
	}
	if !slices.Equal(h.Links, []string{"db:database"}) {
		t.Errorf("links %v, want the create form db:database", h.Links)
	}
	wantMounts := []mount.Mount{
		{Type: mount.TypeVolume, Source: "anon1", Target: "/var/cache/app"},
		{Type: mount.TypeVolume, Source: "anon2", Target: "/scratch", ReadOnly: true},
	}
	if !reflect.DeepEqual(h.Mounts, wantMounts) {
		t.Errorf("mounts %+v, want the anonymous volumes %+v", h.Mounts, wantMounts)
	}
	if !slices.Equal(h.Binds, old.HostConfig.Binds) {
		t.Errorf("binds %v", h.Binds)
	}
	if old.Config.Env[0] != "PATH=/usr/bin" || len(old.HostConfig.Mounts) != 0 {
		t.Error("planRecreate modified the inspect document")
	}
}

func TestPlanRecreateNetworks(t *testing.T) {
	plan := planRecreate(oldContainer(), oldImageConfig(), "app:v2")
	front := plan.networking.EndpointsConfig["front"]
	if len(plan.networking.EndpointsConfig) != 1 || front == nil {
		t.Fatalf("create-time networks %v, want front only", plan.networking.EndpointsConfig)
	}
	if !slices.Equal(front.Aliases, []string{"web"}) || front.IPAMConfig == nil || front.IPAMConfig.IPv4Address.String() != "172.30.0.10" {
		t.Errorf("front endpoint %+v: want alias web (not the old ID) and the static address", front)
	}
	if front.IPAddress.IsValid() || front.NetworkID != "" {
		t.Errorf("front endpoint copies operational data: %+v", front)
	}
	if len(plan.extra) != 2 || !slices.Equal(plan.extra["back"].Aliases, []string{"web-back"}) || plan.extra["bridge"] == nil || plan.extra["bridge"].Aliases != nil {
		t.Errorf("extra networks %+v: want back with its alias, bridge without aliases", plan.extra)
	}

	for _, mode := range []container.NetworkMode{"host", "none", "container:other"} {
		old := oldContainer()
		old.HostConfig.NetworkMode = mode
		p := planRecreate(old, oldImageConfig(), "app:v2")
		if p.networking != nil || len(p.extra) != 0 {
			t.Errorf("network mode %s: got endpoints %v %v", mode, p.networking, p.extra)
		}
		if mode.IsContainer() && p.config.Hostname != "" {
			t.Errorf("network mode %s keeps hostname %q", mode, p.config.Hostname)
		}
	}

	old := oldContainer()
	old.HostConfig.NetworkMode = "default"
	if p := planRecreate(old, oldImageConfig(), "app:v2"); p.networking.EndpointsConfig["bridge"] == nil {
		t.Errorf("network mode default: create-time networks %v, want bridge", p.networking.EndpointsConfig)
	}
}

func TestPlanRecreateWithoutOldImage(t *testing.T) {
	old := oldContainer()
	plan := planRecreate(old, nil, "app:v2")
	if !slices.Equal(plan.config.Env, old.Config.Env) || !slices.Equal(plan.config.Cmd, old.Config.Cmd) {
		t.Errorf("without the old image everything must be kept: env %v cmd %v", plan.config.Env, plan.config.Cmd)
	}
}
