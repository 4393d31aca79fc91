package config

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Config is the control plane's configuration. YAML names are the field
// tags; the README lists every field with its flag and variable.
type Config struct {
	// DataDir holds the store, the CA, the server certificate and the
	// bootstrap admin token (created 0700).
	DataDir string `yaml:"data_dir"`
	// ListenAddress is the gRPC (TLS) address for agents and operators.
	ListenAddress string `yaml:"listen_address"`
	// MetricsAddress serves /metrics and /healthz over plain HTTP.
	MetricsAddress string `yaml:"metrics_address"`
	// AdvertiseNames are extra DNS names or IPs for the generated server
	// certificate (localhost, 127.0.0.1, ::1 and the hostname are always in).
	AdvertiseNames []string `yaml:"advertise_names"`
	TLS            TLS      `yaml:"tls"`
	Store          Store    `yaml:"store"`
	// AgentLostAfter: an agent with no stream and no heartbeat for this long
	// is lost. The 12s default is two missed heartbeats at the agent's
	// default 5s interval, plus 2s; raise it with the agents' interval.
	AgentLostAfter Duration `yaml:"agent_lost_after"`
	// AgentReconnectGrace: after this process starts, an agent not heard
	// from since gets this long (at least agent_lost_after) to reconnect
	// before it is lost, so a restart does not declare a large fleet lost
	// while it reconnects.
	AgentReconnectGrace Duration `yaml:"agent_reconnect_grace"`
	// AgentRebalanceRate (replicas on PostgreSQL): a replica holding more
	// than its share of the agents' streams (the streams of the live
	// replicas divided by their number) closes up to this many per second,
	// oldest first, and each agent reconnects to another replica, so that
	// a replica back from a failure gets its share again. 0 turns it off.
	AgentRebalanceRate int `yaml:"agent_rebalance_rate"`
	// AgentCertValidity is the lifetime of the client certificates agents
	// get; agents renew at about two thirds of it (RenewCertificate).
	AgentCertValidity Duration `yaml:"agent_cert_validity"`
	// RegistrationRateLimit bounds Register calls per source address.
	RegistrationRateLimit RateLimit `yaml:"registration_rate_limit"`
	// RegistrationMaxInFlight bounds the registrations in progress at once;
	// more are refused with RESOURCE_EXHAUSTED and retried by the agents,
	// so that a whole fleet booting together queues in the agents, not in
	// the control plane's store.
	RegistrationMaxInFlight int `yaml:"registration_max_in_flight"`
	// HeartbeatPersistInterval is how often an unchanged heartbeat is still written.
	HeartbeatPersistInterval Duration `yaml:"heartbeat_persist_interval"`
	// CommandDeadlineGrace is how long past a command's deadline the control
	// plane waits for the agent's own answer before it ends the command.
	CommandDeadlineGrace Duration `yaml:"command_deadline_grace"`
	// ShutdownTimeout bounds a graceful stop before connections are cut.
	ShutdownTimeout Duration `yaml:"shutdown_timeout"`
	Log             Log      `yaml:"log"`
	// PerAgentMetrics exports about ten series per agent on /metrics
	// (flotilla_agent_up, _cpu_percent, ...). Turn it off above a few
	// thousand agents: the fleet's totals stay, and GetAgent/ListAgents
	// give every agent's readings.
	PerAgentMetrics bool `yaml:"per_agent_metrics"`
	// Profiling serves Go's pprof profiles under /debug/pprof/ on the
	// metrics address. Off by default: profiles reveal internals, and the
	// metrics address has no authentication.
	Profiling bool `yaml:"profiling"`
	// Bootstrap writes the CA certificate and a join token into files for
	// agents that share a volume with the control plane (bootstrap.go).
	Bootstrap Bootstrap `yaml:"bootstrap"`
	// Analysis configures the rollouts' Prometheus analysis gates.
	Analysis Analysis `yaml:"analysis"`
}

// Analysis configures the rollouts' Prometheus analysis (docs/analysis.md).
type Analysis struct {
	// PrometheusURL is the Prometheus server of an analysis that names
	// none (an http or https base URL); empty: such a rollout is refused.
	PrometheusURL string `yaml:"prometheus_url"`
}

// TLS names existing TLS material; empty means generate into DataDir.
type TLS struct {
	CertFile   string `yaml:"cert_file"`
	KeyFile    string `yaml:"key_file"`
	CACertFile string `yaml:"ca_cert_file"`
	CAKeyFile  string `yaml:"ca_key_file"`
}

// Store selects the store.
type Store struct {
	// Driver is "sqlite" (the embedded default) or "postgres".
	Driver string `yaml:"driver"`
	// Path is the SQLite file (default DataDir/flotilla.db).
	Path string `yaml:"path"`
	// DSN is the PostgreSQL connection string (URL or keyword/value form),
	// without the password when PasswordFile is set.
	DSN string `yaml:"dsn"`
	// PasswordFile holds the PostgreSQL password (0600); it is read at
	// start and put into the connection settings, so that no secret sits
	// in a unit file, a config file or the process list.
	PasswordFile string `yaml:"password_file"`
	// MaxConns bounds the PostgreSQL connection pool.
	MaxConns int32 `yaml:"max_conns"`
	// LeaseTTL is how long a replica's leases on a PostgreSQL store (its
	// replica/<holder> lease, and those of the work it drives) last
	// without a renewal. A replica that cannot renew a work lease for
	// LeaseTTL less a fifth stops driving that work before another replica
	// can take it; one whose own replica lease lapses (the database out of
	// reach) keeps serving its agents' streams, takes the lease again when
	// the database answers and claims its streams again. It is about the
	// longest a dead replica's work waits for another (takeover within
	// 1.1 x LeaseTTL).
	LeaseTTL Duration `yaml:"lease_ttl"`
	// LeaseWait is deprecated and ignored: every control plane on a
	// PostgreSQL store is an active replica (there is no standby any
	// more). It is still accepted so that existing configurations load.
	LeaseWait bool `yaml:"lease_wait"`
}

// RateLimit is a token bucket: PerMinute events earned back per minute, at
// most Burst at once.
type RateLimit struct {
	PerMinute int `yaml:"per_minute"`
	Burst     int `yaml:"burst"`
}

// Log configures logging.
type Log struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // json or console
}

// Duration is a time.Duration written as "30s" in YAML.
type Duration time.Duration

// UnmarshalYAML parses a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration like 30s or 5m", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// Std returns the time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

// Default returns the defaults.
func Default() Config {
	return Config{
		DataDir:                  "/var/lib/flotilla",
		ListenAddress:            ":7443",
		MetricsAddress:           ":7090",
		Store:                    Store{Driver: "sqlite", MaxConns: defaultMaxConns, LeaseTTL: Duration(defaultLeaseTTL), LeaseWait: true},
		AgentLostAfter:           Duration(12 * time.Second),
		AgentReconnectGrace:      Duration(time.Minute),
		AgentRebalanceRate:       20,
		AgentCertValidity:        Duration(7 * 24 * time.Hour),
		RegistrationRateLimit:    RateLimit{PerMinute: 5, Burst: 10},
		RegistrationMaxInFlight:  16,
		HeartbeatPersistInterval: Duration(time.Minute),
		ShutdownTimeout:          Duration(10 * time.Second),
		CommandDeadlineGrace:     Duration(5 * time.Second),
		PerAgentMetrics:          true,
		Log:                      Log{Level: "info", Format: "json"},
		Bootstrap:                defaultBootstrap(),
	}
}

// Options are the command line's results besides the configuration.
type Options struct {
	ShowVersion bool
}

// Load builds the configuration from args (without the program name) and
// the environment lookup function.
func Load(args []string, getenv func(string) string, stderr io.Writer) (Config, Options, error) {
	return LoadCommand("flotilla-controlplane", args, getenv, stderr, nil)
}

// LoadCommand is Load for a subcommand (backup, restore) that takes every
// setting of the control plane plus flags of its own, which define adds to
// the flag set before the arguments are parsed.
func LoadCommand(name string, args []string, getenv func(string) string, stderr io.Writer, define func(*flag.FlagSet)) (Config, Options, error) {
	cfg := Default()
	var opts Options
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	if define != nil {
		define(fs)
	}
	configPath := fs.String("config", getenv("FLOTILLA_CONFIG"), "YAML configuration file (env FLOTILLA_CONFIG)")
	fs.BoolVar(&opts.ShowVersion, "version", false, "print the version and exit")
	flagValues := map[string]*string{}
	for _, f := range allFields() {
		flagValues[f.flag] = fs.String(f.flag, "", f.help+" (env "+f.env+")")
	}
	if err := fs.Parse(args); err != nil {
		return cfg, opts, err
	}
	if fs.NArg() > 0 {
		return cfg, opts, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if *configPath != "" {
		if err := loadFile(*configPath, &cfg); err != nil {
			return cfg, opts, err
		}
	}
	for _, f := range allFields() {
		if v := getenv(f.env); v != "" {
			if err := f.set(&cfg, v); err != nil {
				return cfg, opts, fmt.Errorf("config: %s (from %s): %w", f.name, f.env, err)
			}
		}
	}
	var flagErr error
	fs.Visit(func(fl *flag.Flag) {
		for _, f := range allFields() {
			if f.flag == fl.Name && flagErr == nil {
				if err := f.set(&cfg, *flagValues[f.flag]); err != nil {
					flagErr = fmt.Errorf("config: %s (from -%s): %w", f.name, f.flag, err)
				}
			}
		}
	})
	if flagErr != nil {
		return cfg, opts, flagErr
	}
	if cfg.Store.Path == "" {
		cfg.Store.Path = filepath.Join(cfg.DataDir, "flotilla.db")
	}
	return cfg, opts, cfg.Validate()
}

func loadFile(path string, cfg *Config) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("config: %s: %w", path, err)
	}
	return nil
}

// envField binds one setting to a flag and an environment variable.
type envField struct {
	name, flag, env, help string
	set                   func(*Config, string) error
}

func str(p func(*Config) *string) func(*Config, string) error {
	return func(c *Config, v string) error { *p(c) = v; return nil }
}

func dur(p func(*Config) *Duration) func(*Config, string) error {
	return func(c *Config, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("%q is not a duration like 30s or 5m", v)
		}
		*p(c) = Duration(d)
		return nil
	}
}

func boolean(p func(*Config) *bool) func(*Config, string) error {
	return func(c *Config, v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("%q is not true or false", v)
		}
		*p(c) = b
		return nil
	}
}

func int32Field(p func(*Config) *int32) func(*Config, string) error {
	return func(c *Config, v string) error {
		n, err := strconv.ParseInt(v, 10, 32)
		if err != nil {
			return fmt.Errorf("%q is not a whole number", v)
		}
		*p(c) = int32(n)
		return nil
	}
}

func intField(p func(*Config) *int) func(*Config, string) error {
	return func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("%q is not a whole number", v)
		}
		*p(c) = n
		return nil
	}
}

// allFields is every setting: envFields and the sections' own lists.
func allFields() []envField {
	return append(append([]envField(nil), envFields...), bootstrapFields...)
}

var envFields = []envField{
	{"data_dir", "data-dir", "FLOTILLA_DATA_DIR", "data directory", str(func(c *Config) *string { return &c.DataDir })},
	{"listen_address", "listen", "FLOTILLA_LISTEN_ADDRESS", "gRPC listen address", str(func(c *Config) *string { return &c.ListenAddress })},
	{"metrics_address", "metrics-listen", "FLOTILLA_METRICS_ADDRESS", "/metrics and /healthz listen address", str(func(c *Config) *string { return &c.MetricsAddress })},
	{"advertise_names", "advertise-names", "FLOTILLA_ADVERTISE_NAMES", "comma-separated extra names for the server certificate", func(c *Config, v string) error {
		c.AdvertiseNames = nil
		for _, n := range strings.Split(v, ",") {
			if n = strings.TrimSpace(n); n != "" {
				c.AdvertiseNames = append(c.AdvertiseNames, n)
			}
		}
		return nil
	}},
	{"store.driver", "store-driver", "FLOTILLA_STORE_DRIVER", "store driver: sqlite or postgres", str(func(c *Config) *string { return &c.Store.Driver })},
	{"store.path", "store-path", "FLOTILLA_STORE_PATH", "SQLite database file", str(func(c *Config) *string { return &c.Store.Path })},
	{"store.dsn", "store-dsn", "FLOTILLA_STORE_DSN", "PostgreSQL connection string; keep the password out of it (see store.password_file) since flags show in ps", str(func(c *Config) *string { return &c.Store.DSN })},
	{"store.password_file", "store-password-file", "FLOTILLA_STORE_PASSWORD_FILE", "file holding the PostgreSQL password (mode 0600)", str(func(c *Config) *string { return &c.Store.PasswordFile })},
	{"store.max_conns", "store-max-conns", "FLOTILLA_STORE_MAX_CONNS", "PostgreSQL connection pool size", int32Field(func(c *Config) *int32 { return &c.Store.MaxConns })},
	{"store.lease_ttl", "store-lease-ttl", "FLOTILLA_STORE_LEASE_TTL", "PostgreSQL: a replica's leases (its own and its work's); it stops driving a piece of work it cannot renew for this long less a fifth, and a dead replica's work is taken over within 1.1 times this", dur(func(c *Config) *Duration { return &c.Store.LeaseTTL })},
	{"store.lease_wait", "store-lease-wait", "FLOTILLA_STORE_LEASE_WAIT", "deprecated, ignored: every control plane on PostgreSQL is an active replica", boolean(func(c *Config) *bool { return &c.Store.LeaseWait })},
	{"agent_lost_after", "agent-lost-after", "FLOTILLA_AGENT_LOST_AFTER", "time without stream or heartbeat before an agent is lost", dur(func(c *Config) *Duration { return &c.AgentLostAfter })},
	{"agent_reconnect_grace", "agent-reconnect-grace", "FLOTILLA_AGENT_RECONNECT_GRACE", "time after a start that agents get to reconnect before they are lost", dur(func(c *Config) *Duration { return &c.AgentReconnectGrace })},
	{"agent_rebalance_rate", "agent-rebalance-rate", "FLOTILLA_AGENT_REBALANCE_RATE", "replicas: streams per second a replica over its share of the fleet closes so that the agents reconnect to another replica (0: never)", intField(func(c *Config) *int { return &c.AgentRebalanceRate })},
	{"agent_cert_validity", "agent-cert-validity", "FLOTILLA_AGENT_CERT_VALIDITY", "lifetime of agent certificates", dur(func(c *Config) *Duration { return &c.AgentCertValidity })},
	{"analysis.prometheus_url", "analysis-prometheus-url", "FLOTILLA_ANALYSIS_PROMETHEUS_URL", "Prometheus server of the rollouts' analysis gates that name none", str(func(c *Config) *string { return &c.Analysis.PrometheusURL })},
	{"per_agent_metrics", "per-agent-metrics", "FLOTILLA_PER_AGENT_METRICS", "export series per agent on /metrics (true or false)", boolean(func(c *Config) *bool { return &c.PerAgentMetrics })},
	{"profiling", "profiling", "FLOTILLA_PROFILING", "serve pprof under /debug/pprof/ on the metrics address (true or false)", boolean(func(c *Config) *bool { return &c.Profiling })},
	{"log.level", "log-level", "FLOTILLA_LOG_LEVEL", "debug, info, warn or error", str(func(c *Config) *string { return &c.Log.Level })},
	{"log.format", "log-format", "FLOTILLA_LOG_FORMAT", "json or console", str(func(c *Config) *string { return &c.Log.Format })},
}

// Validate checks every field and names the first one that is wrong.
func (c Config) Validate() error {
	if c.DataDir == "" {
		return errors.New("config: data_dir: required")
	}
	if u := c.Analysis.PrometheusURL; u != "" {
		if p, err := url.Parse(u); err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			return fmt.Errorf("config: analysis.prometheus_url: %q is not an http(s) URL", u)
		}
	}
	for name, addr := range map[string]string{"listen_address": c.ListenAddress, "metrics_address": c.MetricsAddress} {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return fmt.Errorf("config: %s: %q must be host:port (e.g. :7443)", name, addr)
		}
	}
	if err := c.Store.validate(); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if err := c.Bootstrap.validate(); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if c.AgentLostAfter.Std() < time.Second {
		return fmt.Errorf("config: agent_lost_after: %s is below the 1s minimum", c.AgentLostAfter.Std())
	}
	if c.AgentReconnectGrace.Std() < 0 {
		return errors.New("config: agent_reconnect_grace: must not be negative")
	}
	if c.AgentRebalanceRate < 0 {
		return fmt.Errorf("config: agent_rebalance_rate: %d must not be negative (0 turns rebalancing off)", c.AgentRebalanceRate)
	}
	if c.AgentCertValidity.Std() < time.Hour {
		return fmt.Errorf("config: agent_cert_validity: %s is below the 1h minimum", c.AgentCertValidity.Std())
	}
	if c.RegistrationRateLimit.PerMinute < 1 || c.RegistrationRateLimit.Burst < 1 {
		return fmt.Errorf("config: registration_rate_limit: per_minute (%d) and burst (%d) must be at least 1",
			c.RegistrationRateLimit.PerMinute, c.RegistrationRateLimit.Burst)
	}
	if c.RegistrationMaxInFlight < 1 {
		return fmt.Errorf("config: registration_max_in_flight: %d must be at least 1", c.RegistrationMaxInFlight)
	}
	if c.HeartbeatPersistInterval.Std() < time.Second {
		return fmt.Errorf("config: heartbeat_persist_interval: %s is below the 1s minimum", c.HeartbeatPersistInterval.Std())
	}
	if c.CommandDeadlineGrace.Std() < 0 {
		return errors.New("config: command_deadline_grace: must not be negative")
	}
	if c.ShutdownTimeout.Std() <= 0 {
		return errors.New("config: shutdown_timeout: must be positive")
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("config: log.level: %q is not one of debug, info, warn, error", c.Log.Level)
	}
	switch c.Log.Format {
	case "json", "console":
	default:
		return fmt.Errorf("config: log.format: %q is not json or console", c.Log.Format)
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		return errors.New("config: tls.cert_file and tls.key_file must be given together")
	}
	if (c.TLS.CACertFile == "") != (c.TLS.CAKeyFile == "") {
		return errors.New("config: tls.ca_cert_file and tls.ca_key_file must be given together")
	}
	return nil
}
