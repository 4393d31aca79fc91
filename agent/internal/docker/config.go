package docker

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"flotilla.dev/pkg/validate"
)

// Defaults for the fields that have one.
const (
	DefaultManagedLabel     = "flotilla.managed=true"
	DefaultStopTimeout      = 10 * time.Second
	DefaultStartGracePeriod = 3 * time.Second
)

// Config is the agent's Docker section (YAML "docker").
type Config struct {
	// Host is the Docker Engine API endpoint; empty means DOCKER_HOST or the
	// default unix:///var/run/docker.sock.
	Host string `yaml:"host"`
	// AllowedRegistries are the registries (host[:port], "docker.io" for
	// Docker Hub) the agent may pull from. Empty refuses every pull.
	AllowedRegistries []string `yaml:"allowed_registries"`
	// ManagedLabel is the "key=value" label that marks containers the agent
	// may restart (default flotilla.managed=true).
	ManagedLabel string `yaml:"managed_label"`
	// ManagedContainers are container names the agent may restart even
	// without the label.
	ManagedContainers []string `yaml:"managed_containers"`
	// ContainerNames maps a container name as commands and services name it
	// to the container's name on this host (e.g. web: web-host1), for hosts
	// that share one Docker engine and so cannot all call the container by
	// the service's name. A restart of the service name acts on the local
	// container (which the guard rails must allow), and the heartbeats
	// report the local container under the service name. Unmapped names
	// are used as they are.
	ContainerNames map[string]string `yaml:"container_names"`
	// StopTimeout is how long a container gets to stop before it is killed
	// when a restart command does not say (default 10s).
	StopTimeout time.Duration `yaml:"stop_timeout"`
	// StartGracePeriod is how long a re-created or restarted container must
	// keep running before the restart counts as done (default 3s). A
	// container that exits within it is replaced by the old one again.
	StartGracePeriod time.Duration `yaml:"start_grace_period"`

	// HealthURL and HealthTimeout are the agent's health.url and
	// health.timeout (set by the agent, not in this section): a
	// blue-green candidate's health is checked at HealthURL with the
	// candidate's port.
	HealthURL     string        `yaml:"-"`
	HealthTimeout time.Duration `yaml:"-"`
}

// registryPattern is host[:port] as image references spell a registry:
// DNS labels or an IPv4 address, optionally a port.
var registryPattern = regexp.MustCompile(`^[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?)*(:[0-9]+)?$`)

// withDefaults returns c with every unset field at its default.
func (c Config) withDefaults() Config {
	if c.ManagedLabel == "" {
		c.ManagedLabel = DefaultManagedLabel
	}
	if c.StopTimeout == 0 {
		c.StopTimeout = DefaultStopTimeout
	}
	if c.StartGracePeriod == 0 {
		c.StartGracePeriod = DefaultStartGracePeriod
	}
	return c
}

// Validate checks every field and returns all problems at once, each
// naming its YAML field (e.g. "docker.managed_label: ..."). Unset fields
// are valid: New fills in their defaults.
func (c Config) Validate() error {
	var errs []error
	if c.ManagedLabel != "" {
		if _, _, err := parseLabel(c.ManagedLabel); err != nil {
			errs = append(errs, fmt.Errorf("docker.managed_label: %w", err))
		}
	}
	for _, r := range c.AllowedRegistries {
		if err := validateRegistry(r); err != nil {
			errs = append(errs, fmt.Errorf("docker.allowed_registries: %w", err))
		}
	}
	for _, n := range c.ManagedContainers {
		if err := validateContainerName(n); err != nil {
			errs = append(errs, fmt.Errorf("docker.managed_containers: %w", err))
		}
	}
	errs = append(errs, validateContainerNames(c.ContainerNames)...)
	if c.StopTimeout < 0 {
		errs = append(errs, fmt.Errorf("docker.stop_timeout: must not be negative, got %v", c.StopTimeout))
	}
	if c.StartGracePeriod < 0 {
		errs = append(errs, fmt.Errorf("docker.start_grace_period: must not be negative, got %v", c.StartGracePeriod))
	}
	return errors.Join(errs...)
}

// validateContainerNames checks docker.container_names: both sides are
// container names, and the mapping is one to one without chains, so that
// every local container has exactly one name in commands and heartbeats.
func validateContainerNames(names map[string]string) []error {
	var errs []error
	owner := make(map[string]string, len(names)) // local name → service name
	for _, svc := range slices.Sorted(maps.Keys(names)) {
		local := names[svc]
		field := "docker.container_names." + svc
		if err := validateContainerName(svc); err != nil {
			errs = append(errs, fmt.Errorf("docker.container_names: key %w", err))
			continue
		}
		if err := validateContainerName(local); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", field, err))
			continue
		}
		if other, dup := owner[local]; dup {
			errs = append(errs, fmt.Errorf("%s: container %q is already the local container of %q; map each local container from one name only", field, local, other))
			continue
		}
		owner[local] = svc
		if _, chained := names[local]; chained && local != svc {
			errs = append(errs, fmt.Errorf("%s: %q is itself a key of docker.container_names; chained or swapped names are ambiguous, map straight to the container's real name", field, local))
		}
	}
	return errs
}

// parseLabel splits "key=value"; the key must not be empty.
func parseLabel(s string) (key, value string, err error) {
	key, value, ok := strings.Cut(s, "=")
	if !ok || strings.TrimSpace(key) == "" || key != strings.TrimSpace(key) {
		return "", "", fmt.Errorf("must be key=value with a non-empty key and no surrounding spaces, got %q", s)
	}
	return key, value, nil
}

// validateRegistry checks host[:port] with a port from 1 to 65535.
func validateRegistry(r string) error {
	if !registryPattern.MatchString(r) {
		return fmt.Errorf("%q is not a registry host[:port] (e.g. registry.example.com:5000 or docker.io)", r)
	}
	if _, port, err := net.SplitHostPort(r); err == nil {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("%q: port must be a number from 1 to 65535", r)
		}
	}
	return nil
}

// validateContainerName checks Docker's container-name grammar
// (validate.ContainerName). Names with
// the suffix of a container set aside during a restart are refused so that
// no command can touch the copy that a failed restart would restore.
func validateContainerName(n string) error {
	if err := validate.ContainerName(n); err != nil {
		return err
	}
	if strings.HasSuffix(n, oldSuffix) {
		return fmt.Errorf("%q ends with %q, which the agent reserves for the container it sets aside during a restart", n, oldSuffix)
	}
	return nil
}
