package config

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// The environment variables the command reads.
const (
	EnvAddress = "FLOTILLA_ADDRESS"
	EnvToken   = "FLOTILLA_TOKEN"
	EnvCA      = "FLOTILLA_CA"
	EnvContext = "FLOTILLA_CONTEXT"
	EnvConfig  = "FLOTILLA_CONFIG"
)

// DefaultAddress is the control plane of `make run`.
const DefaultAddress = "127.0.0.1:7443"

// Context is one named control plane and the credential to use with it.
type Context struct {
	// Address is the control plane's gRPC address, host:port.
	Address string `yaml:"address"`
	// CAFile is the PEM file of the CA that signed the control plane's
	// certificate; empty: the system's roots.
	CAFile string `yaml:"ca_file,omitempty"`
	// TokenFile holds an operator API token (one line).
	TokenFile string `yaml:"token_file,omitempty"`
	// CertFile and KeyFile are an operator certificate
	// (IssueOperatorCertificate) and its key, instead of a token.
	CertFile string `yaml:"cert_file,omitempty"`
	KeyFile  string `yaml:"key_file,omitempty"`
	// ServerName overrides the name checked in the server's certificate
	// (default: the address's host).
	ServerName string `yaml:"server_name,omitempty"`
}

// File is the config file.
type File struct {
	// CurrentContext is the context used when none is named.
	CurrentContext string `yaml:"current_context,omitempty"`
	// Contexts by name.
	Contexts map[string]Context `yaml:"contexts,omitempty"`
}

// Path is the config file's path given the environment lookup getenv.
func Path(getenv func(string) string) (string, error) {
	if p := getenv(EnvConfig); p != "" {
		return p, nil
	}
	if x := getenv("XDG_CONFIG_HOME"); x != "" {
		return filepath.Join(x, "flotilla", "config.yaml"), nil
	}
	home := getenv("HOME")
	if home == "" {
		return "", fmt.Errorf("no config file: set %s or HOME", EnvConfig)
	}
	return filepath.Join(home, ".config", "flotilla", "config.yaml"), nil
}

// Load reads the config file at path; a missing file is an empty config.
func Load(path string) (File, error) {
	var f File
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return f, nil
	}
	if err != nil {
		return f, err
	}
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return f, fmt.Errorf("%s: %v", path, err)
	}
	return f, nil
}

// Save writes f to path (mode 0600, its directory 0700 when created).
func Save(path string, f File) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	b, err := yaml.Marshal(f)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// Names lists the contexts, sorted.
func (f File) Names() []string {
	names := make([]string, 0, len(f.Contexts))
	for n := range f.Contexts {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Use makes name the current context; it must exist.
func (f *File) Use(name string) error {
	if _, ok := f.Contexts[name]; !ok {
		return unknownContext(name, *f)
	}
	f.CurrentContext = name
	return nil
}

func unknownContext(name string, f File) error {
	if len(f.Contexts) == 0 {
		return fmt.Errorf("context %q: no context is defined (flotilla context set %s --address ...)", name, name)
	}
	return fmt.Errorf("context %q: no such context (defined: %s)", name, strings.Join(f.Names(), ", "))
}
