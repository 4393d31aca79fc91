package docker

import (
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr []string // substrings; none means valid
	}{
		{"empty uses defaults", Config{}, nil},
		{"full", Config{
			AllowedRegistries: []string{"docker.io", "registry.example.com:5000", "127.0.0.1:5000", "localhost"},
			ManagedLabel:      "com.example.deploy=yes", ManagedContainers: []string{"web", "worker_1", "api.v2"},
			StopTimeout: 30 * time.Second, StartGracePeriod: 5 * time.Second,
		}, nil},
		{"label with empty value", Config{ManagedLabel: "managed="}, nil},
		{"label without =", Config{ManagedLabel: "managed"}, []string{"docker.managed_label: must be key=value"}},
		{"label with empty key", Config{ManagedLabel: "=true"}, []string{"docker.managed_label"}},
		{"registry with scheme", Config{AllowedRegistries: []string{"https://registry.example.com"}}, []string{`docker.allowed_registries: "https://registry.example.com" is not a registry host[:port]`}},
		{"registry with path", Config{AllowedRegistries: []string{"registry.example.com/team"}}, []string{"docker.allowed_registries"}},
		{"registry port out of range", Config{AllowedRegistries: []string{"registry:70000"}}, []string{"port must be a number from 1 to 65535"}},
		{"empty registry", Config{AllowedRegistries: []string{""}}, []string{"docker.allowed_registries"}},
		{"bad container name", Config{ManagedContainers: []string{"-web"}}, []string{`docker.managed_containers: "-web" is not a container name`}},
		{"reserved container name", Config{ManagedContainers: []string{"web.flotilla-old"}}, []string{"docker.managed_containers", "reserves"}},
		{"container names", Config{ContainerNames: map[string]string{"web": "web-host1", "api": "api.2", "same": "same"}}, nil},
		{"bad local container name", Config{ContainerNames: map[string]string{"web": "web host1"}}, []string{`docker.container_names.web: "web host1" is not a container name`}},
		{"bad service container name", Config{ContainerNames: map[string]string{"-web": "web-host1"}}, []string{`docker.container_names: key "-web" is not a container name`}},
		{"reserved local container name", Config{ContainerNames: map[string]string{"web": "web-host1.flotilla-old"}}, []string{"docker.container_names.web", "reserves"}},
		{"two names for one container", Config{ContainerNames: map[string]string{"api": "web-host1", "web": "web-host1"}}, []string{`docker.container_names.web: container "web-host1" is already the local container of "api"`}},
		{"swapped names", Config{ContainerNames: map[string]string{"api": "web", "web": "api"}}, []string{"docker.container_names.api", "chained or swapped"}},
		{"negative durations", Config{StopTimeout: -time.Second, StartGracePeriod: -time.Second}, []string{"docker.stop_timeout: must not be negative", "docker.start_grace_period: must not be negative"}},
		{"every error at once", Config{ManagedLabel: "x", AllowedRegistries: []string{"a b"}}, []string{"docker.managed_label", "docker.allowed_registries"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate accepted %+v", tt.cfg)
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
		})
	}
}

func TestNewFillsDefaultsAndRefusesBadConfig(t *testing.T) {
	e := newTestExecutor(t, nil, nil)
	if e.labelKey != "flotilla.managed" || e.labelValue != "true" || e.cfg.StopTimeout != DefaultStopTimeout {
		t.Errorf("defaults: label %s=%s stop timeout %v", e.labelKey, e.labelValue, e.cfg.StopTimeout)
	}
	if _, err := New(Config{ManagedLabel: "nokey"}, nil); err == nil || !strings.Contains(err.Error(), "docker.managed_label") {
		t.Errorf("New with a bad label: %v", err)
	}
}
