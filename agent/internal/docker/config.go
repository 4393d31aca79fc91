package docker

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
}
