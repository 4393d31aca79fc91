package docker

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"flotilla.dev/agent/internal/executor"
	flotillav1 "flotilla.dev/gen/flotilla/v1"
)

// isManaged applies the managed-container guard rail to a container's
// name and labels.
func (e *Executor) isManaged(name string, labels map[string]string) bool {
	if _, ok := e.managed[name]; ok {
		return true
	}
	v, ok := labels[e.labelKey]
	return ok && v == e.labelValue
}

// inspectByName inspects the container called name. The engine also
// resolves ID prefixes, so the name it reports is checked: a command names
// a container, never an ID that happens to match.
func (e *Executor) inspectByName(ctx context.Context, name string) (client.ContainerInspectResult, bool, error) {
	res, err := e.docker.ContainerInspect(ctx, name, client.ContainerInspectOptions{})
	switch {
	case cerrdefs.IsNotFound(err):
		return client.ContainerInspectResult{}, false, nil
	case err != nil:
		return client.ContainerInspectResult{}, false, engineError(ctx, err, "inspect container %s", name)
	case strings.TrimPrefix(res.Container.Name, "/") != name:
		return client.ContainerInspectResult{}, false, nil
	}
	return res, true, nil
}

// managedContainer inspects name and applies the guard rail: a missing
// container fails the command, an unmanaged one rejects it.
func (e *Executor) managedContainer(ctx context.Context, name string) (client.ContainerInspectResult, error) {
	c, ok, err := e.inspectByName(ctx, name)
	if err != nil {
		return client.ContainerInspectResult{}, err
	}
	if !ok {
		return client.ContainerInspectResult{}, fmt.Errorf("container %s does not exist on this host", name)
	}
	var labels map[string]string
	if c.Container.Config != nil {
		labels = c.Container.Config.Labels
	}
	if !e.isManaged(name, labels) {
		return client.ContainerInspectResult{}, executor.Reject("container %s is not managed by the agent: it has no label %s=%s and is not in docker.managed_containers",
			name, e.labelKey, e.labelValue)
	}
	return c, nil
}

// localName is the container a command's container name designates on
// this host (docker.container_names).
func (e *Executor) localName(name string) string {
	if local, ok := e.localNames[name]; ok {
		return local
	}
	return name
}

// reportedName is the name under which a local container is reported:
// its name in docker.container_names, else its own. ok is false for a
// container whose own name is mapped to another container: a restart of
// that name would not act on it, so it is not reported under it.
func (e *Executor) reportedName(local string) (name string, ok bool) {
	if svc, aliased := e.serviceNames[local]; aliased {
		return svc, true
	}
	if _, mapped := e.localNames[local]; mapped {
		return "", false
	}
	return local, true
}

// ManagedContainers lists the containers the agent manages (by label or
// by name), running or not, sorted by name, for the hello and the
// heartbeats. Containers set aside by a restart in progress are left out.
// A container in docker.container_names is reported under the name that
// commands use for it, so that a rollout sees the service's container.
func (e *Executor) ManagedContainers(ctx context.Context) ([]*flotillav1.ManagedContainer, error) {
	candidates, err := e.listCandidates(ctx)
	if err != nil {
		return nil, err
	}
	e.noteHealthPort(candidates)
	var out []*flotillav1.ManagedContainer
	for _, c := range candidates {
		name := containerName(c.Names)
		if name == "" || strings.HasSuffix(name, oldSuffix) || strings.HasSuffix(name, nextSuffix) || strings.HasSuffix(name, previousSuffix) ||
			!e.isManaged(name, c.Labels) {
			continue
		}
		reported, ok := e.reportedName(name)
		if !ok {
			continue
		}
		out = append(out, &flotillav1.ManagedContainer{
			Name:        reported,
			ContainerId: c.ID,
			Image:       c.Image,
			ImageId:     c.ImageID,
			State:       string(c.State),
			HostPorts:   hostPorts(c.Ports),
		})
	}
	slices.SortFunc(out, func(a, b *flotillav1.ManagedContainer) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// listCandidates asks the engine for the containers that may be managed
// rather than for all of them, which on a busy host is a large answer to
// decode every heartbeat: the containers with the managed label, and,
// when docker.managed_containers names some, those with one of the names.
// The engine combines the values of one filter with OR but different
// filters with AND, so the names take a second request. Its filters may
// match more than isManaged accepts (a name filter is a regular
// expression), never less, and isManaged has the last word.
func (e *Executor) listCandidates(ctx context.Context) ([]container.Summary, error) {
	byLabel, err := e.docker.ContainerList(ctx, client.ContainerListOptions{
		All:     true,
		Filters: make(client.Filters).Add("label", e.labelKey+"="+e.labelValue),
	})
	if err != nil {
		return nil, engineError(ctx, err, "list containers labelled %s=%s", e.labelKey, e.labelValue)
	}
	if len(e.managed) == 0 {
		return byLabel.Items, nil
	}
	byName, err := e.docker.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: e.nameFilters()})
	if err != nil {
		return nil, engineError(ctx, err, "list the containers of docker.managed_containers")
	}
	items := byLabel.Items
	for _, c := range byName.Items {
		if !slices.ContainsFunc(byLabel.Items, func(l container.Summary) bool { return l.ID == c.ID }) {
			items = append(items, c)
		}
	}
	return items, nil
}

// nameFilters matches the containers named in docker.managed_containers.
// The engine matches a name filter as a regular expression against the
// name with and without its leading slash, so each name is quoted and
// anchored: "web" must not match "web-2" or "old.web".
func (e *Executor) nameFilters() client.Filters {
	f := make(client.Filters)
	for name := range e.managed {
		f.Add("name", "^/?"+regexp.QuoteMeta(name)+"$")
	}
	return f
}

// containerName picks a container's own name from the list form, where
// legacy links add "/other/alias" entries beside "/name".
func containerName(names []string) string {
	for _, n := range names {
		n = strings.TrimPrefix(n, "/")
		if n != "" && !strings.Contains(n, "/") {
			return n
		}
	}
	return ""
}

// hostPorts are the distinct host ports of a container's published ports,
// ascending.
func hostPorts(ports []container.PortSummary) []int32 {
	var out []int32
	for _, p := range ports {
		if p.PublicPort != 0 && !slices.Contains(out, int32(p.PublicPort)) {
			out = append(out, int32(p.PublicPort))
		}
	}
	slices.Sort(out)
	return out
}
