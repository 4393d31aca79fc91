package config

import (
	"fmt"
	"strings"
	"time"

	"flotilla.dev/agent/internal/docker"
)

// setting is one field that the environment and flags can set. Its environment
// variable and flag names are derived from its YAML path, so the three stay
// consistent: control_plane.ca_file is FLOTILLA_CONTROL_PLANE_CA_FILE and
// -control-plane.ca-file.
type setting struct {
	field string // YAML path
	usage string
	set   func(c *Config, value string) error
}

// EnvPrefix starts every environment variable the agent reads.
const EnvPrefix = "FLOTILLA_"

func (s setting) env() string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(s.field, ".", "_"))
}

func (s setting) flag() string {
	return strings.ReplaceAll(s.field, "_", "-")
}

// settings lists every field settable from the environment and flags.
var settings = []setting{
	{"control_plane.address", "host:port of the control plane (this or control_plane.addresses is required)", setString(func(c *Config) *string { return &c.ControlPlane.Address })},
	{"control_plane.addresses", `host:port of several control plane replicas, "a:7443,b:7443"`, setAddresses},
	{"control_plane.ca_file", "PEM file of the CA to trust at registration", setString(func(c *Config) *string { return &c.ControlPlane.CAFile })},
	{"control_plane.ca_sha256", "hex SHA-256 of the CA certificate to pin at registration", setString(func(c *Config) *string { return &c.ControlPlane.CASHA256 })},
	{"control_plane.server_name", "TLS server name of the control plane (default: host of each address)", setString(func(c *Config) *string { return &c.ControlPlane.ServerName })},
	{"join_token", "join token for registration (prefer join-token-file: flags are visible in ps)", setString(func(c *Config) *string { return &c.JoinToken })},
	{"join_token_file", "file holding the join token", setString(func(c *Config) *string { return &c.JoinTokenFile })},
	{"bootstrap_wait", "how long registration waits for join-token-file and control-plane.ca-file to appear (default 0: not at all)", setDuration(func(c *Config) *time.Duration { return &c.BootstrapWait })},
	{"state_dir", "directory for the key, certificate and agent ID (default " + DefaultStateDir + ")", setString(func(c *Config) *string { return &c.StateDir })},
	{"hostname", "host name reported to the control plane (default: os.Hostname())", setString(func(c *Config) *string { return &c.Hostname })},
	{"labels", `labels as "key=value,key=value"`, setLabels},
	{"heartbeat_interval", "time between heartbeats (default 5s)", setDuration(func(c *Config) *time.Duration { return &c.HeartbeatInterval })},
	{"health.url", "application health URL (empty: no health check)", setString(func(c *Config) *string { return &c.Health.URL })},
	{"health.timeout", "health check timeout (default 2s)", setDuration(func(c *Config) *time.Duration { return &c.Health.Timeout })},
	{"disk_paths", `extra paths whose disk usage is reported, "a,b"`, setDiskPaths},
	{"docker.allowed_registries", `registries the agent may pull from, "host[:port],..." (empty refuses every pull)`, setRegistries},
	{"docker.managed_label", `"key=value" label of the containers the agent may restart (default ` + docker.DefaultManagedLabel + ")", setString(func(c *Config) *string { return &c.Docker.ManagedLabel })},
	{"log.level", "debug, info, warn or error (default info)", setString(func(c *Config) *string { return &c.Log.Level })},
	{"log.format", "json or console (default json)", setString(func(c *Config) *string { return &c.Log.Format })},
}

func setString(field func(*Config) *string) func(*Config, string) error {
	return func(c *Config, v string) error {
		*field(c) = v
		return nil
	}
}

func setDuration(field func(*Config) *time.Duration) func(*Config, string) error {
	return func(c *Config, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("invalid duration %q (use Go syntax such as 5s or 1m30s)", v)
		}
		*field(c) = d
		return nil
	}
}

// setLabels replaces the labels: a source of higher precedence gives the whole
// set, so that a label can also be removed.
func setLabels(c *Config, v string) error {
	labels, err := ParseLabels(v)
	if err != nil {
		return err
	}
	c.Labels = labels
	return nil
}

// setAddresses replaces the list, as setLabels does.
func setAddresses(c *Config, v string) error {
	c.ControlPlane.Addresses = splitList(v)
	return nil
}

func setRegistries(c *Config, v string) error {
	c.Docker.AllowedRegistries = splitList(v)
	return nil
}

func setDiskPaths(c *Config, v string) error {
	c.DiskPaths = splitList(v)
	return nil
}

// ParseLabels parses "env=prod,role=web". Spaces around keys and values are
// trimmed; an empty string gives no labels.
func ParseLabels(s string) (map[string]string, error) {
	labels := map[string]string{}
	for _, item := range splitList(s) {
		k, v, ok := strings.Cut(item, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, fmt.Errorf("label %q is not key=value", item)
		}
		labels[k] = strings.TrimSpace(v)
	}
	return labels, nil
}

// splitList splits a comma-separated list, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}
