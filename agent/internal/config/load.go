package config

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"gopkg.in/yaml.v3"
)

// ErrVersion is returned by Load when -version was given; the caller prints
// its version and exits.
var ErrVersion = errors.New("version requested")

// ConfigEnv names the config file when -config is not given.
const ConfigEnv = EnvPrefix + "CONFIG"

// LookupEnvFunc reads an environment variable; os.LookupEnv in production.
type LookupEnvFunc func(key string) (string, bool)

// Load builds the configuration from, in increasing order of precedence: the
// defaults, the YAML file named by -config (or FLOTILLA_CONFIG), FLOTILLA_*
// environment variables, and flags. An environment variable set to the empty
// string counts as unset. The result is validated.
//
// Load returns flag.ErrHelp for -h and ErrVersion for -version. Usage and
// flag errors are printed to output (os.Stderr in production).
func Load(args []string, lookupEnv LookupEnvFunc, output io.Writer) (Config, error) {
	fs, configPath, showVersion := newFlagSet(output)
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("config: unexpected arguments %q", fs.Args())
	}
	if *showVersion {
		return Config{}, ErrVersion
	}

	cfg := Defaults()
	path := *configPath
	if path == "" {
		path, _ = lookupEnv(ConfigEnv)
	}
	if path != "" {
		if err := loadFile(path, &cfg); err != nil {
			return Config{}, err
		}
	}
	if err := applyEnv(&cfg, lookupEnv); err != nil {
		return Config{}, err
	}
	if err := applyFlags(&cfg, fs); err != nil {
		return Config{}, err
	}
	if cfg.Hostname == "" {
		// An error leaves Hostname empty, and Validate reports it.
		cfg.Hostname, _ = os.Hostname()
	}
	return cfg, cfg.Validate()
}

// newFlagSet declares one string flag per setting: flags are kept as strings
// and converted by the same setters as the environment, so both sources accept
// the same syntax and report errors the same way.
func newFlagSet(output io.Writer) (fs *flag.FlagSet, configPath *string, showVersion *bool) {
	fs = flag.NewFlagSet("flotilla-agent", flag.ContinueOnError)
	fs.SetOutput(output)
	configPath = fs.String("config", "", "YAML config file (env "+ConfigEnv+")")
	showVersion = fs.Bool("version", false, "print the version and exit")
	for _, s := range settings {
		fs.String(s.flag(), "", s.usage+" (env "+s.env()+")")
	}
	return fs, configPath, showVersion
}

// loadFile decodes the YAML file over cfg: fields the file leaves out keep
// their defaults, and unknown fields are an error (a typo must not be ignored).
func loadFile(path string, cfg *Config) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("config: %s: %w", path, err)
	}
	return nil
}

func applyEnv(cfg *Config, lookupEnv LookupEnvFunc) error {
	for _, s := range settings {
		v, ok := lookupEnv(s.env())
		if !ok || v == "" {
			continue
		}
		if err := s.set(cfg, v); err != nil {
			return fmt.Errorf("config: %s (%s): %w", s.field, s.env(), err)
		}
	}
	return nil
}

// applyFlags applies only the flags given on the command line, so an absent
// flag does not override the file or the environment with its zero value.
func applyFlags(cfg *Config, fs *flag.FlagSet) error {
	byFlag := make(map[string]setting, len(settings))
	for _, s := range settings {
		byFlag[s.flag()] = s
	}
	var err error
	fs.Visit(func(f *flag.Flag) {
		s, ok := byFlag[f.Name]
		if !ok || err != nil {
			return // -config and -version are not settings
		}
		if e := s.set(cfg, f.Value.String()); e != nil {
			err = fmt.Errorf("config: %s (-%s): %w", s.field, s.flag(), e)
		}
	})
	return err
}
