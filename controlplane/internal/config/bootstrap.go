package config

import (
	"fmt"
	"path/filepath"
	"strconv"
	"time"
)

// Defaults and bounds of the bootstrap join token. The bounds are those of
// FleetService.CreateJoinToken.
const (
	defaultBootstrapJoinTokenTTL  = 24 * time.Hour
	defaultBootstrapJoinTokenUses = 10
	minBootstrapJoinTokenTTL      = time.Minute
	maxBootstrapJoinTokenTTL      = 30 * 24 * time.Hour
	maxBootstrapJoinTokenUses     = 100000
)

// Bootstrap writes what a new agent needs to register into files, for
// agents that share a volume with the control plane (deploy/compose): they
// register on the first start without a value copied from a running control
// plane. Both files are off unless configured.
type Bootstrap struct {
	// CACertFile receives the CA certificate (PEM, 0644) at every start:
	// the agents' control_plane.ca_file. It is public.
	CACertFile string `yaml:"ca_cert_file"`
	// JoinTokenFile receives the secret of a join token (0600) when it
	// holds no usable one this control plane wrote: the agents'
	// join_token_file. A file it did not write is left alone.
	JoinTokenFile string `yaml:"join_token_file"`
	// JoinTokenTTL is the lifetime of a token written to JoinTokenFile; a
	// token with less than half of it left is replaced at the next start.
	JoinTokenTTL Duration `yaml:"join_token_ttl"`
	// JoinTokenMaxUses is how many agents may register with that token.
	JoinTokenMaxUses int `yaml:"join_token_max_uses"`
}

// defaultBootstrap is Bootstrap's defaults: no files.
func defaultBootstrap() Bootstrap {
	return Bootstrap{JoinTokenTTL: Duration(defaultBootstrapJoinTokenTTL), JoinTokenMaxUses: defaultBootstrapJoinTokenUses}
}

// bootstrapFields are the settings of Bootstrap, with their flags and
// environment variables.
var bootstrapFields = []envField{
	{"bootstrap.ca_cert_file", "bootstrap-ca-cert-file", "FLOTILLA_BOOTSTRAP_CA_CERT_FILE", "write the CA certificate (PEM, 0644) here at every start, for agents' control_plane.ca_file", str(func(c *Config) *string { return &c.Bootstrap.CACertFile })},
	{"bootstrap.join_token_file", "bootstrap-join-token-file", "FLOTILLA_BOOTSTRAP_JOIN_TOKEN_FILE", "write a join token's secret here (0600) at start unless it holds a usable one, for agents' join_token_file", str(func(c *Config) *string { return &c.Bootstrap.JoinTokenFile })},
	{"bootstrap.join_token_ttl", "bootstrap-join-token-ttl", "FLOTILLA_BOOTSTRAP_JOIN_TOKEN_TTL", "lifetime of the bootstrap join token (default 24h)", dur(func(c *Config) *Duration { return &c.Bootstrap.JoinTokenTTL })},
	{"bootstrap.join_token_max_uses", "bootstrap-join-token-max-uses", "FLOTILLA_BOOTSTRAP_JOIN_TOKEN_MAX_USES", "registrations the bootstrap join token allows (default 10)", func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("%q is not a whole number", v)
		}
		c.Bootstrap.JoinTokenMaxUses = n
		return nil
	}},
}

// validate checks the section; each error names its field.
func (b Bootstrap) validate() error {
	for name, p := range map[string]string{"bootstrap.ca_cert_file": b.CACertFile, "bootstrap.join_token_file": b.JoinTokenFile} {
		if p != "" && !filepath.IsAbs(p) {
			return fmt.Errorf("%s: %q must be an absolute path", name, p)
		}
	}
	if b.CACertFile != "" && filepath.Clean(b.CACertFile) == filepath.Clean(b.JoinTokenFile) {
		return fmt.Errorf("bootstrap.join_token_file: %q is bootstrap.ca_cert_file too; give each its own file", b.JoinTokenFile)
	}
	if ttl := b.JoinTokenTTL.Std(); ttl < minBootstrapJoinTokenTTL || ttl > maxBootstrapJoinTokenTTL {
		return fmt.Errorf("bootstrap.join_token_ttl: %s must be between %s and %s", ttl, minBootstrapJoinTokenTTL, maxBootstrapJoinTokenTTL)
	}
	if n := b.JoinTokenMaxUses; n < 1 || n > maxBootstrapJoinTokenUses {
		return fmt.Errorf("bootstrap.join_token_max_uses: %d must be between 1 and %d", n, maxBootstrapJoinTokenUses)
	}
	return nil
}
