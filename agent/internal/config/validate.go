package config

import (
	"errors"
	"net"
	"net/url"
	"path/filepath"
	"strconv"

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
	add(validateAddress(c.ControlPlane.Address))
	if _, err := c.ControlPlane.CAPin(); err != nil {
		add(fieldError("control_plane.ca_sha256", "%v", err))
	}
	if c.JoinToken != "" && c.JoinTokenFile != "" {
		add(fieldError("join_token_file", "set either join_token or join_token_file, not both"))
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

func validateAddress(addr string) error {
	const field = "control_plane.address"
	if addr == "" {
		return fieldError(field, "is required")
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return fieldError(field, "must be host:port, got %q", addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fieldError(field, "port %q must be a number from 1 to 65535", port)
	}
	return nil
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
