package nginx

// Config is the agent's Nginx section (YAML "nginx").
type Config struct {
	// Binary is the nginx executable (default "nginx" in PATH).
	Binary string `yaml:"binary"`
	// ConfigFile is the main configuration passed as -c to nginx -t and
	// nginx -s reload; empty uses nginx's compiled-in default.
	ConfigFile string `yaml:"config_file"`
	// Upstreams are the upstream files the agent may edit, by the name
	// commands use.
	Upstreams map[string]Upstream `yaml:"upstreams"`
}

// Upstream is one upstream file.
type Upstream struct {
	// File is the file holding the upstream block (an include of nginx.conf).
	File string `yaml:"file"`
}
