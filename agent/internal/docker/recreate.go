package docker

import (
	"maps"
	"path"
	"reflect"
	"slices"
	"strings"

	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"
)

// LabelPreviousImage is set on a re-created container to the image
// reference of the container it replaced, so that the host itself says
// what a rollback would go back to.
const LabelPreviousImage = "flotilla.previous-image"

// createPlan is how to create the replacement of a container.
type createPlan struct {
	config *container.Config
	host   *container.HostConfig
	// networking holds the primary network's endpoint only: engines before
	// API 1.44 accept one network at create time.
	networking *network.NetworkingConfig
	// extra are the other networks, connected after create and before start.
	extra map[string]*network.EndpointSettings
}

// planRecreate derives the replacement of old running image from old's
// configuration as the engine reports it. The engine reports the merge of
// the old image's defaults and the container's own settings; the old
// image's defaults are taken out again (as Watchtower and Compose do) so
// that the new image's ENV, CMD, labels, healthcheck… apply, while
// everything set on the container itself is kept. oldImage may be nil when
// the old image is gone; then everything is kept as reported.
func planRecreate(old container.InspectResponse, oldImage *dockerspec.DockerOCIImageConfig, image string) createPlan {
	cfg := planConfig(old, oldImage, image)
	host := planHostConfig(old, cfg)
	networking, extra := planNetworks(old)
	return createPlan{config: cfg, host: host, networking: networking, extra: extra}
}

// planConfig is old's Config without the old image's defaults.
func planConfig(old container.InspectResponse, oldImage *dockerspec.DockerOCIImageConfig, image string) *container.Config {
	cfg := container.Config{}
	if old.Config != nil {
		cfg = *old.Config
	}
	cfg.Image = image
	cfg.Env = slices.Clone(cfg.Env)
	cfg.Labels = maps.Clone(cfg.Labels)
	cfg.Volumes = maps.Clone(cfg.Volumes)
	cfg.ExposedPorts = maps.Clone(cfg.ExposedPorts)
	cfg.OnBuild = nil // image metadata, never a container setting

	// A hostname equal to the short ID is Docker's default, not a choice:
	// the new container gets its own. A container sharing another's
	// network namespace cannot have a hostname at all.
	if cfg.Hostname == shortID(old.ID) || (old.HostConfig != nil && old.HostConfig.NetworkMode.IsContainer()) {
		cfg.Hostname, cfg.Domainname = "", ""
	}
	if oldImage != nil {
		subtractImageDefaults(&cfg, oldImage)
	}
	if cfg.Labels == nil {
		cfg.Labels = map[string]string{}
	}
	if old.Config != nil && old.Config.Image != "" {
		cfg.Labels[LabelPreviousImage] = old.Config.Image
	}
	if old.HostConfig != nil {
		for p := range old.HostConfig.PortBindings {
			if cfg.ExposedPorts == nil {
				cfg.ExposedPorts = network.PortSet{}
			}
			cfg.ExposedPorts[p] = struct{}{}
		}
	}
	return &cfg
}

// subtractImageDefaults removes from cfg what it inherited from img.
func subtractImageDefaults(cfg *container.Config, img *dockerspec.DockerOCIImageConfig) {
	cfg.Env = slices.DeleteFunc(cfg.Env, func(kv string) bool { return slices.Contains(img.Env, kv) })
	for k, v := range img.Labels {
		if cur, ok := cfg.Labels[k]; ok && cur == v {
			delete(cfg.Labels, k)
		}
	}
	for v := range img.Volumes {
		delete(cfg.Volumes, v)
	}
	for p := range img.ExposedPorts {
		if port, err := network.ParsePort(p); err == nil {
			delete(cfg.ExposedPorts, port)
		}
	}
	// The entrypoint and command go together: an entrypoint of one's own
	// makes the command one's own too.
	if slices.Equal(cfg.Entrypoint, img.Entrypoint) {
		cfg.Entrypoint = nil
		if slices.Equal(cfg.Cmd, img.Cmd) {
			cfg.Cmd = nil
		}
	}
	if cfg.WorkingDir == img.WorkingDir {
		cfg.WorkingDir = ""
	}
	if cfg.User == img.User {
		cfg.User = ""
	}
	if cfg.StopSignal == img.StopSignal {
		cfg.StopSignal = ""
	}
	if slices.Equal(cfg.Shell, img.Shell) {
		cfg.Shell = nil
	}
	if cfg.Healthcheck != nil && img.Healthcheck != nil && reflect.DeepEqual(*cfg.Healthcheck, *img.Healthcheck) {
		cfg.Healthcheck = nil
	}
}

// planHostConfig is old's HostConfig, with its anonymous volumes kept:
// without them the new container would start on empty volumes where the
// old one had its data.
func planHostConfig(old container.InspectResponse, cfg *container.Config) *container.HostConfig {
	host := container.HostConfig{}
	if old.HostConfig != nil {
		host = *old.HostConfig
	}
	host.Links = normalizeLinks(host.Links)
	host.Mounts = slices.Clone(host.Mounts)
	declared := declaredTargets(host)
	for _, m := range old.Mounts {
		if m.Type != mount.TypeVolume || m.Name == "" || declared[m.Destination] {
			continue
		}
		host.Mounts = append(host.Mounts, mount.Mount{
			Type: mount.TypeVolume, Source: m.Name, Target: m.Destination, ReadOnly: !m.RW,
		})
		delete(cfg.Volumes, m.Destination)
	}
	return &host
}

// declaredTargets are the container paths that Binds and Mounts name.
func declaredTargets(host container.HostConfig) map[string]bool {
	out := map[string]bool{}
	for _, b := range host.Binds {
		if parts := strings.Split(b, ":"); len(parts) >= 2 {
			out[parts[1]] = true
		}
	}
	for _, m := range host.Mounts {
		out[m.Target] = true
	}
	return out
}

// normalizeLinks turns the inspect form of legacy links ("/db:/web/db")
// back into the create form ("db:db").
func normalizeLinks(links []string) []string {
	if links == nil {
		return nil
	}
	out := make([]string, 0, len(links))
	for _, l := range links {
		name, alias, ok := strings.Cut(l, ":")
		if !ok {
			out = append(out, l)
			continue
		}
		out = append(out, strings.TrimPrefix(name, "/")+":"+path.Base(alias))
	}
	return out
}

// planNetworks splits old's networks into the primary one (its network
// mode), given at create, and the others, connected afterwards. Only the
// settings a user chooses are copied: static addresses, aliases, links,
// driver options — not the addresses Docker assigned.
func planNetworks(old container.InspectResponse) (*network.NetworkingConfig, map[string]*network.EndpointSettings) {
	if old.HostConfig == nil || old.NetworkSettings == nil {
		return nil, nil
	}
	mode := old.HostConfig.NetworkMode
	if mode.IsHost() || mode.IsNone() || mode.IsContainer() {
		return nil, nil // no endpoints of its own
	}
	primary := string(mode)
	if mode.IsDefault() {
		primary = network.NetworkBridge
	}
	primary = networkKey(old.NetworkSettings.Networks, primary)
	var networking *network.NetworkingConfig
	extra := map[string]*network.EndpointSettings{}
	for name, ep := range old.NetworkSettings.Networks {
		settings := userEndpointSettings(name, ep, shortID(old.ID))
		if name == primary {
			networking = &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{name: settings}}
			continue
		}
		extra[name] = settings
	}
	return networking, extra
}

// networkKey finds the Networks entry of the network mode, which may name
// the network or give (a prefix of) its ID.
func networkKey(networks map[string]*network.EndpointSettings, mode string) string {
	if _, ok := networks[mode]; ok {
		return mode
	}
	for name, ep := range networks {
		if ep != nil && ep.NetworkID != "" && strings.HasPrefix(ep.NetworkID, mode) {
			return name
		}
	}
	return mode
}

// userEndpointSettings keeps the settings of ep that a user chose. The
// old container's short ID, which Docker adds to the aliases by itself,
// is dropped; the default bridge takes no aliases.
func userEndpointSettings(name string, ep *network.EndpointSettings, oldShortID string) *network.EndpointSettings {
	if ep == nil {
		return &network.EndpointSettings{}
	}
	out := &network.EndpointSettings{
		IPAMConfig: ep.IPAMConfig.Copy(),
		Links:      normalizeLinks(ep.Links),
		DriverOpts: maps.Clone(ep.DriverOpts),
		GwPriority: ep.GwPriority,
	}
	if name != network.NetworkBridge {
		out.Aliases = slices.DeleteFunc(slices.Clone(ep.Aliases), func(a string) bool { return a == oldShortID })
		if len(out.Aliases) == 0 {
			out.Aliases = nil
		}
	}
	return out
}

// shortID is Docker's 12-character form of a container ID.
func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
