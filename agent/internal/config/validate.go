package config

import (
	"errors"
	"fmt"
	"net/url"
	"path/filepath"

	"flotilla.dev/agent/internal/endpoint"
	"flotilla.dev/pkg/validate"
)

// Validate checks every field and returns all problems at once, each naming
// its field (e.g. "config: control_plane.address: must be host:port").
func (c Config) Validate() error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	add(validateAddresses(c.ControlPlane))
	if _, err := c.ControlPlane.CAPin(); err != nil {
		add(fieldError("control_plane.ca_sha256", "%v", err))
	}
	if c.JoinToken != "" && c.JoinTokenFile != "" {
		add(fieldError("join_token_file", "set either join_token or join_token_file, not both"))
	}
	if c.BootstrapWait < 0 {
		add(fieldError("bootstrap_wait", "must not be negative, got %v", c.BootstrapWait))
	}
	if c.StateDir == "" {
		add(fieldError("state_dir", "is required"))
	}
	if c.Hostname == "" {
		add(fieldError("hostname", "is required (os.Hostname() gave nothing)"))
	}
	// The control plane refuses to register an agent with labels outside
	// this grammar: say so at start, not at registration.
	if err := validate.Labels(c.Labels, validate.MaxLabels); err != nil {
		add(fieldError("labels", "%v", err))
	}
	if c.HeartbeatInterval < MinHeartbeatInterval {
		add(fieldError("heartbeat_interval", "must be at least %v, got %v", MinHeartbeatInterval, c.HeartbeatInterval))
	}
	add(validateHealthURL(c.Health.URL))
	if c.Health.Timeout <= 0 {
		add(fieldError("health.timeout", "must be positive, got %v", c.Health.Timeout))
	}
	for _, p := range c.DiskPaths {
		if !filepath.IsAbs(p) {
			add(fieldError("disk_paths", "%q is not an absolute path", p))
		}
	}
	add(validateLog(c.Log))
	// Each executor validates its own section; their errors name the
	// YAML field (backup.databases.app.port, nginx.upstreams.lb.file, ...).
	add(c.Docker.Validate())
	add(c.Backup.Validate())
	add(c.Nginx.Validate())
	return errors.Join(errs...)
}

// validateAddresses checks control_plane.address and control_plane.addresses:
// one of them is required, both only when they say the same, and every entry
// must be host:port.
func validateAddresses(cp ControlPlane) error {
	const single, list = "control_plane.address", "control_plane.addresses"
	switch {
	case cp.Address == "" && len(cp.Addresses) == 0:
		return fieldError(single, "is required (or %s, a list of host:port)", list)
	case len(cp.Addresses) == 0:
		if err := endpoint.CheckAddress(cp.Address); err != nil {
			return fieldError(single, "%v", err)
		}
		return nil
	case cp.Address != "" && (len(cp.Addresses) != 1 || cp.Addresses[0] != cp.Address):
		return fieldError(single, "set either %s or %s, not both (%s is %q, %s is %q)",
			single, list, single, cp.Address, list, cp.Addresses)
	}
	var errs []error
	first := map[string]int{}
	for i, a := range cp.Addresses {
		field := fmt.Sprintf("%s[%d]", list, i)
		if err := endpoint.CheckAddress(a); err != nil {
			errs = append(errs, fieldError(field, "%v", err))
		} else if j, dup := first[a]; dup {
			errs = append(errs, fieldError(field, "%q repeats %s[%d]", a, list, j))
		} else {
			first[a] = i
		}
	}
	return errors.Join(errs...)
}

func validateHealthURL(raw string) error {
	if raw == "" {
		return nil
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fieldError("health.url", "must be an absolute http or https URL, got %q", raw)
	}
	return nil
}

func validateLog(l Log) error {
	var errs []error
	switch l.Level {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fieldError("log.level", "must be debug, info, warn or error, got %q", l.Level))
	}
	switch l.Format {
	case "json", "console":
	default:
		errs = append(errs, fieldError("log.format", "must be json or console, got %q", l.Format))
	}
	return errors.Join(errs...)
}
