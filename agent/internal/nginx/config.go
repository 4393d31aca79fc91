package nginx

import (
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"

	"flotilla.dev/pkg/validate"
)

// DefaultBinary is the nginx executable looked up in PATH when
// Config.Binary is empty.
const DefaultBinary = "nginx"

// fallbackBinary is tried when DefaultBinary is not in PATH: services
// started by systemd or cron often have a PATH without /usr/sbin.
const fallbackBinary = "/usr/sbin/nginx"

// Config is the agent's Nginx section (YAML "nginx").
type Config struct {
	// Binary is the nginx executable (default "nginx" in PATH, then
	// /usr/sbin/nginx). A path must be absolute.
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
	// It may also be a fragment of bare "server ...;" directives included
	// inside an upstream block.
	File string `yaml:"file"`
	// Block restricts edits to the upstream block of that name in File;
	// empty edits the server wherever it appears in the file's upstream
	// blocks (and in a fragment's top level).
	Block string `yaml:"block"`
}

// Validate checks the section without touching the file system and returns
// every problem at once, each naming its YAML field.
func (c Config) Validate() error {
	var errs []error
	if c.Binary != "" && strings.ContainsRune(c.Binary, '/') && !filepath.IsAbs(c.Binary) {
		errs = append(errs, fieldError("nginx.binary", "must be a name looked up in PATH or an absolute path, got %q", c.Binary))
	}
	if c.ConfigFile != "" && !filepath.IsAbs(c.ConfigFile) {
		errs = append(errs, fieldError("nginx.config_file", "must be an absolute path, got %q", c.ConfigFile))
	}
	for _, name := range slices.Sorted(maps.Keys(c.Upstreams)) {
		errs = append(errs, validateUpstream(name, c.Upstreams[name])...)
	}
	return errors.Join(errs...)
}

func validateUpstream(name string, u Upstream) []error {
	// Commands name upstreams by these keys (validate.UpstreamName).
	if err := validate.UpstreamName(name); err != nil {
		return []error{fieldError("nginx.upstreams", "key %v", err)}
	}
	var errs []error
	field := "nginx.upstreams." + name
	switch {
	case u.File == "":
		errs = append(errs, fieldError(field+".file", "is required"))
	case !filepath.IsAbs(u.File):
		errs = append(errs, fieldError(field+".file", "must be an absolute path, got %q", u.File))
	}
	if u.Block != "" {
		if err := validate.UpstreamName(u.Block); err != nil {
			errs = append(errs, fieldError(field+".block", "%v", err))
		}
	}
	return errs
}

func fieldError(field, format string, args ...any) error {
	return fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...))
}
