package config

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"flotilla.dev/agent/internal/backup"
	"flotilla.dev/agent/internal/docker"
	"flotilla.dev/agent/internal/nginx"
)

// Defaults for the fields that have one.
const (
	DefaultStateDir          = "/var/lib/flotilla-agent"
	DefaultHeartbeatInterval = 5 * time.Second
	DefaultHealthTimeout     = 2 * time.Second
	DefaultLogLevel          = "info"
	DefaultLogFormat         = "json"

	// MinHeartbeatInterval keeps a misconfigured fleet from flooding the
	// control plane.
	MinHeartbeatInterval = time.Second
)

// Config is the agent's configuration. The YAML names are the documented ones;
// the environment variable and flag of each field are listed in settings.go.
type Config struct {
	ControlPlane ControlPlane `yaml:"control_plane"`
	// JoinToken is the secret from CreateJoinToken, needed only to register.
	JoinToken string `yaml:"join_token"`
	// JoinTokenFile holds the join token; preferred over JoinToken because a
	// file does not show up in the process list or the environment.
	JoinTokenFile string `yaml:"join_token_file"`
	// BootstrapWait is how long a registration waits for join_token_file
	// and control_plane.ca_file to appear, when another process writes
	// them (the control plane's bootstrap files on a shared volume, as in
	// deploy/compose); 0, the default, fails at once without them.
	BootstrapWait time.Duration `yaml:"bootstrap_wait"`
	// StateDir keeps the agent's key, certificate, CA bundle and ID.
	StateDir string `yaml:"state_dir"`
	// Hostname is reported to the control plane; defaults to os.Hostname().
	Hostname string `yaml:"hostname"`
	// Labels are claimed at registration and reported in every hello.
	Labels map[string]string `yaml:"labels"`
	// HeartbeatInterval is the time between two heartbeats.
	HeartbeatInterval time.Duration `yaml:"heartbeat_interval"`
	Health            Health        `yaml:"health"`
	// DiskPaths are reported in addition to "/".
	DiskPaths []string `yaml:"disk_paths"`
	Log       Log      `yaml:"log"`

	// Docker, Backup and Nginx configure the command executors and their
	// guard rails; each package validates its own section.
	Docker docker.Config `yaml:"docker"`
	Backup backup.Config `yaml:"backup"`
	Nginx  nginx.Config  `yaml:"nginx"`
}

// ControlPlane says where the control plane is and how to trust it before the
// agent has its own CA bundle.
type ControlPlane struct {
	// Address is host:port of the control plane's agent API. A name with
	// several A/AAAA records gives the agent every record to choose from.
	Address string `yaml:"address"`
	// Addresses lists host:port of several control planes (replicas); an
	// agent connects to one of them and moves to another when its fails.
	// Set either Address or Addresses.
	Addresses []string `yaml:"addresses"`
	// CAFile is a PEM file with the CA to trust at registration.
	CAFile string `yaml:"ca_file"`
	// CASHA256 pins the CA at registration: the hex SHA-256 of its DER, as
	// CreateJoinTokenResponse.ca_cert_sha256 gives it. Colons are allowed.
	CASHA256 string `yaml:"ca_sha256"`
	// ServerName overrides the TLS name checked in the control plane's
	// certificate; by default it is the host part of each address.
	ServerName string `yaml:"server_name"`
}

// Health configures the application health check.
type Health struct {
	// URL is the application's /health endpoint; empty disables the check.
	URL string `yaml:"url"`
	// Timeout bounds one check, body included.
	Timeout time.Duration `yaml:"timeout"`
}

// Log configures logging.
type Log struct {
	// Level is debug, info, warn or error.
	Level string `yaml:"level"`
	// Format is json or console.
	Format string `yaml:"format"`
}

// Defaults returns a Config holding every static default. The hostname, whose
// default depends on the machine, is filled by Load.
func Defaults() Config {
	return Config{
		StateDir:          DefaultStateDir,
		HeartbeatInterval: DefaultHeartbeatInterval,
		Health:            Health{Timeout: DefaultHealthTimeout},
		Log:               Log{Level: DefaultLogLevel, Format: DefaultLogFormat},
	}
}

// AddressList is the configured control plane addresses: Addresses, or
// Address alone.
func (c ControlPlane) AddressList() []string {
	if len(c.Addresses) > 0 {
		return c.Addresses
	}
	if c.Address != "" {
		return []string{c.Address}
	}
	return nil
}

// CAPin decodes CASHA256. It returns nil, nil when no pin is configured.
func (c ControlPlane) CAPin() ([]byte, error) {
	if c.CASHA256 == "" {
		return nil, nil
	}
	s := strings.ReplaceAll(strings.TrimSpace(c.CASHA256), ":", "")
	pin, err := hex.DecodeString(s)
	if err != nil || len(pin) != 32 {
		return nil, errors.New("must be the 64 hex digits of a SHA-256 digest")
	}
	return pin, nil
}

// fieldError names the field that is wrong, so the operator knows what to fix.
func fieldError(field, format string, args ...any) error {
	return fmt.Errorf("config: %s: %s", field, fmt.Sprintf(format, args...))
}
