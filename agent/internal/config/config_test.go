package config

import (
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// env is a fake environment for Load.
type env map[string]string

func (e env) lookup(k string) (string, bool) { v, ok := e[k]; return v, ok }

func writeFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

const fullFile = `
control_plane:
  address: file.example:7443
  ca_file: /etc/flotilla/ca.pem
  server_name: cp.internal
join_token_file: /etc/flotilla/token
state_dir: /srv/flotilla
hostname: web-1
labels:
  env: staging
  role: web
heartbeat_interval: 10s
health:
  url: http://127.0.0.1:8080/health
  timeout: 3s
disk_paths: [/var/lib/docker]
log:
  level: debug
  format: console
`

func TestLoadFileOverDefaults(t *testing.T) {
	cfg, err := load([]string{"-config", writeFile(t, fullFile)}, env{})
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		ControlPlane:      ControlPlane{Address: "file.example:7443", CAFile: "/etc/flotilla/ca.pem", ServerName: "cp.internal"},
		JoinTokenFile:     "/etc/flotilla/token",
		StateDir:          "/srv/flotilla",
		Hostname:          "web-1",
		Labels:            map[string]string{"env": "staging", "role": "web"},
		HeartbeatInterval: 10 * time.Second,
		Health:            Health{URL: "http://127.0.0.1:8080/health", Timeout: 3 * time.Second},
		DiskPaths:         []string{"/var/lib/docker"},
		Log:               Log{Level: "debug", Format: "console"},
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("got  %+v\nwant %+v", cfg, want)
	}
}

func TestLoadDefaults(t *testing.T) {
	cfg, err := load([]string{"-control-plane.address", "cp:7443"}, env{})
	if err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	switch {
	case cfg.StateDir != DefaultStateDir:
		t.Errorf("state_dir = %q", cfg.StateDir)
	case cfg.HeartbeatInterval != 5*time.Second:
		t.Errorf("heartbeat_interval = %v", cfg.HeartbeatInterval)
	case cfg.Health.Timeout != 2*time.Second:
		t.Errorf("health.timeout = %v", cfg.Health.Timeout)
	case cfg.Log != Log{Level: "info", Format: "json"}:
		t.Errorf("log = %+v", cfg.Log)
	case cfg.Hostname != host:
		t.Errorf("hostname = %q, want os.Hostname() %q", cfg.Hostname, host)
	}
}

func TestPrecedence(t *testing.T) {
	file := writeFile(t, "control_plane: {address: file:1}\nhostname: from-file\nheartbeat_interval: 10s\nlabels: {env: file}\n")
	tests := []struct {
		name      string
		args      []string
		env       env
		wantAddr  string
		wantHost  string
		wantHB    time.Duration
		wantLabel map[string]string
	}{
		{
			name:     "file only",
			args:     []string{"-config", file},
			wantAddr: "file:1", wantHost: "from-file", wantHB: 10 * time.Second,
			wantLabel: map[string]string{"env": "file"},
		},
		{
			name: "env over file",
			args: []string{"-config", file},
			env: env{
				"FLOTILLA_CONTROL_PLANE_ADDRESS": "env:2",
				"FLOTILLA_HEARTBEAT_INTERVAL":    "20s",
				"FLOTILLA_LABELS":                "env=prod, role=web",
			},
			wantAddr: "env:2", wantHost: "from-file", wantHB: 20 * time.Second,
			wantLabel: map[string]string{"env": "prod", "role": "web"},
		},
		{
			name: "flags over env",
			args: []string{"-config", file, "-control-plane.address", "flag:3", "-labels", "tier=db"},
			env: env{
				"FLOTILLA_CONTROL_PLANE_ADDRESS": "env:2",
				"FLOTILLA_HOSTNAME":              "from-env",
				"FLOTILLA_LABELS":                "env=prod",
			},
			wantAddr: "flag:3", wantHost: "from-env", wantHB: 10 * time.Second,
			wantLabel: map[string]string{"tier": "db"},
		},
		{
			name:     "empty env var counts as unset",
			args:     []string{"-config", file},
			env:      env{"FLOTILLA_HOSTNAME": ""},
			wantAddr: "file:1", wantHost: "from-file", wantHB: 10 * time.Second,
			wantLabel: map[string]string{"env": "file"},
		},
		{
			name:     "config file from FLOTILLA_CONFIG",
			env:      env{"FLOTILLA_CONFIG": file},
			wantAddr: "file:1", wantHost: "from-file", wantHB: 10 * time.Second,
			wantLabel: map[string]string{"env": "file"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.env == nil {
				tt.env = env{}
			}
			cfg, err := load(tt.args, tt.env)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.ControlPlane.Address != tt.wantAddr || cfg.Hostname != tt.wantHost || cfg.HeartbeatInterval != tt.wantHB {
				t.Errorf("got address %q hostname %q heartbeat %v; want %q %q %v",
					cfg.ControlPlane.Address, cfg.Hostname, cfg.HeartbeatInterval, tt.wantAddr, tt.wantHost, tt.wantHB)
			}
			if !reflect.DeepEqual(cfg.Labels, tt.wantLabel) {
				t.Errorf("labels = %v, want %v", cfg.Labels, tt.wantLabel)
			}
		})
	}
}

func TestEveryFieldHasEnvAndFlag(t *testing.T) {
	tests := []struct {
		field, env, flag, value string
		get                     func(Config) any
		want                    any
	}{
		{"control_plane.address", "FLOTILLA_CONTROL_PLANE_ADDRESS", "control-plane.address", "a:1", func(c Config) any { return c.ControlPlane.Address }, "a:1"},
		{"control_plane.addresses", "FLOTILLA_CONTROL_PLANE_ADDRESSES", "control-plane.addresses", "a:1,b:2", func(c Config) any { return c.ControlPlane.Addresses }, []string{"a:1", "b:2"}},
		{"control_plane.ca_file", "FLOTILLA_CONTROL_PLANE_CA_FILE", "control-plane.ca-file", "/ca", func(c Config) any { return c.ControlPlane.CAFile }, "/ca"},
		{"control_plane.ca_sha256", "FLOTILLA_CONTROL_PLANE_CA_SHA256", "control-plane.ca-sha256", strings.Repeat("ab", 32), func(c Config) any { return c.ControlPlane.CASHA256 }, strings.Repeat("ab", 32)},
		{"control_plane.server_name", "FLOTILLA_CONTROL_PLANE_SERVER_NAME", "control-plane.server-name", "cp", func(c Config) any { return c.ControlPlane.ServerName }, "cp"},
		{"join_token", "FLOTILLA_JOIN_TOKEN", "join-token", "tok", func(c Config) any { return c.JoinToken }, "tok"},
		{"join_token_file", "FLOTILLA_JOIN_TOKEN_FILE", "join-token-file", "/tok", func(c Config) any { return c.JoinTokenFile }, "/tok"},
		{"bootstrap_wait", "FLOTILLA_BOOTSTRAP_WAIT", "bootstrap-wait", "2m", func(c Config) any { return c.BootstrapWait }, 2 * time.Minute},
		{"state_dir", "FLOTILLA_STATE_DIR", "state-dir", "/s", func(c Config) any { return c.StateDir }, "/s"},
		{"hostname", "FLOTILLA_HOSTNAME", "hostname", "h", func(c Config) any { return c.Hostname }, "h"},
		{"labels", "FLOTILLA_LABELS", "labels", "a=b", func(c Config) any { return c.Labels }, map[string]string{"a": "b"}},
		{"heartbeat_interval", "FLOTILLA_HEARTBEAT_INTERVAL", "heartbeat-interval", "7s", func(c Config) any { return c.HeartbeatInterval }, 7 * time.Second},
		{"health.url", "FLOTILLA_HEALTH_URL", "health.url", "http://x/health", func(c Config) any { return c.Health.URL }, "http://x/health"},
		{"health.timeout", "FLOTILLA_HEALTH_TIMEOUT", "health.timeout", "1s", func(c Config) any { return c.Health.Timeout }, time.Second},
		{"disk_paths", "FLOTILLA_DISK_PATHS", "disk-paths", "/a, /b", func(c Config) any { return c.DiskPaths }, []string{"/a", "/b"}},
		{"docker.allowed_registries", "FLOTILLA_DOCKER_ALLOWED_REGISTRIES", "docker.allowed-registries", "localhost:5000, registry.example", func(c Config) any { return c.Docker.AllowedRegistries }, []string{"localhost:5000", "registry.example"}},
		{"docker.managed_label", "FLOTILLA_DOCKER_MANAGED_LABEL", "docker.managed-label", "demo=host-1", func(c Config) any { return c.Docker.ManagedLabel }, "demo=host-1"},
		{"log.level", "FLOTILLA_LOG_LEVEL", "log.level", "warn", func(c Config) any { return c.Log.Level }, "warn"},
		{"log.format", "FLOTILLA_LOG_FORMAT", "log.format", "console", func(c Config) any { return c.Log.Format }, "console"},
	}
	if len(tests) != len(settings) {
		t.Fatalf("%d settings but %d cases: add the new setting here", len(settings), len(tests))
	}
	base := []string{"-control-plane.address", "x:1"}
	for _, tt := range tests {
		t.Run(tt.field, func(t *testing.T) {
			args := base
			if tt.field == "control_plane.address" || tt.field == "control_plane.addresses" {
				args = nil
			}
			cfg, err := load(args, env{tt.env: tt.value})
			if err != nil {
				t.Fatalf("env: %v", err)
			}
			if got := tt.get(cfg); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("env %s: got %v, want %v", tt.env, got, tt.want)
			}
			cfg, err = load(append(append([]string{}, args...), "-"+tt.flag, tt.value), env{})
			if err != nil {
				t.Fatalf("flag: %v", err)
			}
			if got := tt.get(cfg); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("flag -%s: got %v, want %v", tt.flag, got, tt.want)
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	valid := []string{"-control-plane.address", "cp:7443"}
	tests := []struct {
		name    string
		args    []string
		env     env
		file    string
		wantErr string
	}{
		{"address missing", nil, nil, "", "config: control_plane.address: is required"},
		{"address without port", []string{"-control-plane.address", "cp"}, nil, "", "config: control_plane.address: must be host:port"},
		{"address without host", []string{"-control-plane.address", ":7443"}, nil, "", "config: control_plane.address: must be host:port"},
		{"address with bad port", []string{"-control-plane.address", "cp:http"}, nil, "", "config: control_plane.address: port"},
		{"pin not hex", valid, env{"FLOTILLA_CONTROL_PLANE_CA_SHA256": "zz"}, "", "config: control_plane.ca_sha256: must be the 64 hex digits"},
		{"pin too short", valid, env{"FLOTILLA_CONTROL_PLANE_CA_SHA256": "abcd"}, "", "config: control_plane.ca_sha256"},
		{"token and token file", valid, env{"FLOTILLA_JOIN_TOKEN": "a", "FLOTILLA_JOIN_TOKEN_FILE": "/b"}, "", "config: join_token_file: set either"},
		{"negative bootstrap wait", append(valid, "-bootstrap-wait", "-1s"), nil, "", "config: bootstrap_wait: must not be negative, got -1s"},
		{"bootstrap wait not a duration", valid, env{"FLOTILLA_BOOTSTRAP_WAIT": "5"}, "", "config: bootstrap_wait (FLOTILLA_BOOTSTRAP_WAIT): invalid duration"},
		{"registry the docker section refuses", valid, env{"FLOTILLA_DOCKER_ALLOWED_REGISTRIES": "https://r.example"}, "", "docker.allowed_registries: "},
		{"empty state dir", append(valid, "-state-dir", ""), nil, "", "config: state_dir: is required"},
		{"heartbeat too short", append(valid, "-heartbeat-interval", "10ms"), nil, "", "config: heartbeat_interval: must be at least 1s"},
		{"heartbeat not a duration", valid, env{"FLOTILLA_HEARTBEAT_INTERVAL": "5"}, "", "config: heartbeat_interval (FLOTILLA_HEARTBEAT_INTERVAL): invalid duration"},
		{"health timeout flag not a duration", append(valid, "-health.timeout", "soon"), nil, "", "config: health.timeout (-health.timeout): invalid duration"},
		{"health timeout zero", append(valid, "-health.timeout", "0s"), nil, "", "config: health.timeout: must be positive"},
		{"health url relative", append(valid, "-health.url", "/health"), nil, "", "config: health.url: must be an absolute http or https URL"},
		{"health url ftp", append(valid, "-health.url", "ftp://x/health"), nil, "", "config: health.url"},
		{"relative disk path", append(valid, "-disk-paths", "data"), nil, "", `config: disk_paths: "data" is not an absolute path`},
		{"bad log level", append(valid, "-log.level", "verbose"), nil, "", "config: log.level: must be debug, info, warn or error"},
		{"bad log format", append(valid, "-log.format", "xml"), nil, "", "config: log.format: must be json or console"},
		{"malformed labels env", valid, env{"FLOTILLA_LABELS": "env=prod,web"}, "", `config: labels (FLOTILLA_LABELS): label "web" is not key=value`},
		{"label without key", valid, env{"FLOTILLA_LABELS": "=x"}, "", "config: labels (FLOTILLA_LABELS)"},
		{"label value the control plane refuses", valid, env{"FLOTILLA_LABELS": "env=pr;od"}, "", `config: labels: label "env": label value "pr;od": character ';' not allowed`},
		{"label key the control plane refuses", valid, nil, "labels:\n  \"-role\": web\n", `config: labels: label key "-role" must start and end with a letter or digit`},
		{"unknown yaml field", valid, nil, "control_plane:\n  adress: cp:1\n", "field adress not found"},
		{"bad yaml duration", valid, nil, "heartbeat_interval: often\n", "cannot unmarshal"},
		{"yaml duration without unit", valid, nil, "heartbeat_interval: 5\n", "cannot unmarshal !!int `5` into time.Duration"},
		{"missing config file", []string{"-config", "/nonexistent/agent.yaml"}, nil, "", "config: open /nonexistent/agent.yaml"},
		{"positional argument", append(valid, "extra"), nil, "", "config: unexpected arguments"},
		{"unknown flag", []string{"-nope"}, nil, "", "flag provided but not defined"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := tt.args
			if tt.file != "" {
				args = append([]string{"-config", writeFile(t, tt.file)}, args...)
			}
			if tt.env == nil {
				tt.env = env{}
			}
			_, err := load(args, tt.env)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got error %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	cfg := Defaults()
	cfg.Hostname = "h"
	cfg.Log.Level = "loud"
	err := cfg.Validate()
	for _, want := range []string{"control_plane.address", "log.level"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not mention %s", err, want)
		}
	}
}

func TestVersionAndHelp(t *testing.T) {
	if _, err := load([]string{"-version"}, env{}); !errors.Is(err, ErrVersion) {
		t.Errorf("-version: got %v, want ErrVersion", err)
	}
	if _, err := load([]string{"-h"}, env{}); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: got %v, want flag.ErrHelp", err)
	}
}

func TestEmptyFileKeepsDefaults(t *testing.T) {
	cfg, err := load([]string{"-config", writeFile(t, ""), "-control-plane.address", "cp:1"}, env{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HeartbeatInterval != DefaultHeartbeatInterval {
		t.Errorf("heartbeat_interval = %v", cfg.HeartbeatInterval)
	}
}

func TestCAPin(t *testing.T) {
	hexPin := strings.Repeat("0a", 32)
	colons := strings.Repeat("0A:", 31) + "0A" // as openssl x509 -fingerprint prints it
	for _, in := range []string{hexPin, strings.ToUpper(hexPin), colons, " " + hexPin + "\n"} {
		pin, err := ControlPlane{CASHA256: in}.CAPin()
		if err != nil || len(pin) != 32 || pin[0] != 0x0a {
			t.Errorf("CAPin(%q) = %x, %v", in, pin, err)
		}
	}
	if pin, err := (ControlPlane{}).CAPin(); pin != nil || err != nil {
		t.Errorf("no pin: got %x, %v", pin, err)
	}
}

func TestAddressList(t *testing.T) {
	tests := []struct {
		cp   ControlPlane
		want []string
	}{
		{ControlPlane{Address: "cp.example:7443"}, []string{"cp.example:7443"}},
		{ControlPlane{Addresses: []string{"a:1", "b:1"}}, []string{"a:1", "b:1"}},
		{ControlPlane{Address: "a:1", Addresses: []string{"a:1"}}, []string{"a:1"}},
		{ControlPlane{}, nil},
	}
	for _, tt := range tests {
		if got := tt.cp.AddressList(); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%+v: got %q, want %q", tt.cp, got, tt.want)
		}
	}
}

func TestAddressesFromFileEnvAndFlag(t *testing.T) {
	want := []string{"cp-1.example:7443", "cp-2.example:7443", "10.0.0.3:7443"}
	file := "control_plane:\n  addresses:\n    - cp-1.example:7443\n    - cp-2.example:7443\n    - 10.0.0.3:7443\n"
	fromFile, err := load([]string{"-config", writeFile(t, file)}, env{})
	if err != nil {
		t.Fatal(err)
	}
	fromEnv, err := load(nil, env{"FLOTILLA_CONTROL_PLANE_ADDRESSES": "cp-1.example:7443, cp-2.example:7443,10.0.0.3:7443"})
	if err != nil {
		t.Fatal(err)
	}
	fromFlag, err := load([]string{"-control-plane.addresses", "cp-1.example:7443,cp-2.example:7443,10.0.0.3:7443"}, env{})
	if err != nil {
		t.Fatal(err)
	}
	for name, cfg := range map[string]Config{"file": fromFile, "env": fromEnv, "flag": fromFlag} {
		if !reflect.DeepEqual(cfg.ControlPlane.Addresses, want) || !reflect.DeepEqual(cfg.ControlPlane.AddressList(), want) {
			t.Errorf("%s: addresses %q, want %q", name, cfg.ControlPlane.Addresses, want)
		}
	}
	// Both keys are accepted when they say the same.
	if _, err := load([]string{"-control-plane.address", "a:1", "-control-plane.addresses", "a:1"}, env{}); err != nil {
		t.Errorf("address and addresses naming the same control plane: %v", err)
	}
}

func TestAddressesValidation(t *testing.T) {
	tests := []struct {
		name string
		cp   ControlPlane
		want []string // every one must appear in the error
	}{
		{"neither", ControlPlane{}, []string{"config: control_plane.address: is required (or control_plane.addresses"}},
		{"both, different", ControlPlane{Address: "a:1", Addresses: []string{"b:1", "c:1"}},
			[]string{"config: control_plane.address: set either control_plane.address or control_plane.addresses, not both", `"a:1"`, `["b:1" "c:1"]`}},
		{"both, address among several", ControlPlane{Address: "a:1", Addresses: []string{"a:1", "b:1"}},
			[]string{"set either control_plane.address or control_plane.addresses"}},
		{"entry without port", ControlPlane{Addresses: []string{"a:1", "b"}},
			[]string{`config: control_plane.addresses[1]: must be host:port, got "b"`}},
		{"entry with bad port", ControlPlane{Addresses: []string{"a:99999"}},
			[]string{`config: control_plane.addresses[0]: port "99999" must be a number from 1 to 65535`}},
		{"empty entry", ControlPlane{Addresses: []string{"a:1", "b:1", ""}},
			[]string{"config: control_plane.addresses[2]: is empty"}},
		{"several bad entries", ControlPlane{Addresses: []string{":1", "a:1", "a:x"}},
			[]string{"control_plane.addresses[0]: must be host:port", "control_plane.addresses[2]: port"}},
		{"duplicate", ControlPlane{Addresses: []string{"a:1", "b:1", "a:1"}},
			[]string{`config: control_plane.addresses[2]: "a:1" repeats control_plane.addresses[0]`}},
		{"single address without port", ControlPlane{Address: "cp"},
			[]string{`config: control_plane.address: must be host:port, got "cp"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Defaults()
			cfg.Hostname = "h"
			cfg.ControlPlane = tt.cp
			err := cfg.Validate()
			for _, w := range tt.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("got %v, want an error containing %q", err, w)
				}
			}
		})
	}
	cfg := Defaults()
	cfg.Hostname = "h"
	cfg.ControlPlane.Addresses = []string{"cp-1.example:7443", "[fd00::2]:7443", "10.0.0.3:7443"}
	if err := cfg.Validate(); err != nil {
		t.Errorf("valid addresses refused: %v", err)
	}
}

// load runs Load with the usage output discarded.
func load(args []string, e env) (Config, error) {
	return Load(args, e.lookup, io.Discard)
}
