package docker

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"flotilla.dev/agent/internal/executor"
	flotillav1 "flotilla.dev/gen/flotilla/v1"
)

// validationExecutor allows Docker Hub and one private registry.
func validationExecutor(t *testing.T) *Executor {
	return newTestExecutor(t, nil, func(c *Config) {
		c.AllowedRegistries = []string{"docker.io", "registry.example.com:5000"}
	})
}

func TestValidatePull(t *testing.T) {
	e := validationExecutor(t)
	tests := []struct {
		image   string
		wantErr string // "" means accepted
	}{
		{"nginx:1.25", ""},
		{"library/nginx:1.25", ""},
		{"docker.io/library/nginx:1.25", ""},
		{"index.docker.io/library/nginx:1.25", ""},
		{"registry.example.com:5000/team/app:v2", ""},
		{"registry.example.com:5000/team/app@sha256:" + strings.Repeat("a", 64), ""},
		{"registry.example.com:5000/team/app:v2@sha256:" + strings.Repeat("b", 64), ""},
		{"registry.example.com/team/app:v2", "registry registry.example.com is not in docker.allowed_registries"},
		{"ghcr.io/org/app:1", "registry ghcr.io is not in docker.allowed_registries"},
		{"127.0.0.1:5000/app:v1", "registry 127.0.0.1:5000 is not in docker.allowed_registries"},
		{"UPPER/case", "pull.image"},
		{"app:tag with space", "pull.image"},
		{"a;rm -rf /", "pull.image"},
		{"$(id)", "pull.image"},
		{"", "pull.image: is required"},
		{"nginx", "pull.image: \"nginx\" names no tag or digest"},
		{"app@sha256:short", "pull.image"},
		{" nginx:1", "pull.image"},
		{"nginx:1\n", "pull.image"},
	}
	for _, tt := range tests {
		t.Run(tt.image, func(t *testing.T) {
			err := e.Validate(pullSpec(tt.image))
			checkValidation(t, err, tt.wantErr)
		})
	}
}

func TestValidateRestart(t *testing.T) {
	e := validationExecutor(t)
	spec := func(name, image string, stop *durationpb.Duration) *flotillav1.CommandSpec {
		return &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Restart{Restart: &flotillav1.RestartCommand{
			Container: name, Image: image, StopTimeout: stop,
		}}}
	}
	tests := []struct {
		name    string
		spec    *flotillav1.CommandSpec
		wantErr string
	}{
		{"plain", spec("web", "", nil), ""},
		{"with image", spec("web-1", "nginx:1.25", nil), ""},
		{"with stop timeout", spec("web_1.a", "", durationpb.New(30*time.Second)), ""},
		{"one-letter name", spec("w", "", nil), ""},
		{"no name", spec("", "", nil), "restart.container: is required"},
		{"name with slash", spec("/web", "", nil), "restart.container"},
		{"name with space", spec("web 1", "", nil), "restart.container"},
		{"name with shell", spec("web;rm", "", nil), "restart.container"},
		{"name starting with dash", spec("-web", "", nil), "restart.container"},
		{"set-aside name", spec("web.flotilla-old", "", nil), "restart.container"},
		{"image from a registry not allowed", spec("web", "ghcr.io/org/app:1", nil), "registry ghcr.io is not in docker.allowed_registries"},
		{"malformed image", spec("web", "$(id)", nil), "restart.image"},
		{"image without tag", spec("web", "nginx", nil), "restart.image"},
		{"negative stop timeout", spec("web", "", durationpb.New(-time.Second)), "restart.stop_timeout"},
		{"huge stop timeout", spec("web", "", durationpb.New(time.Hour)), "restart.stop_timeout"},
		{"invalid duration", spec("web", "", &durationpb.Duration{Seconds: 1, Nanos: -1}), "restart.stop_timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkValidation(t, e.Validate(tt.spec), tt.wantErr)
		})
	}
}

func TestValidateOtherKinds(t *testing.T) {
	e := validationExecutor(t)
	for _, spec := range []*flotillav1.CommandSpec{
		{Kind: &flotillav1.CommandSpec_Backup{Backup: &flotillav1.BackupCommand{Database: "app"}}},
		{Kind: &flotillav1.CommandSpec_Drain{Drain: &flotillav1.DrainCommand{}}},
		{},
		nil,
	} {
		err := e.Validate(spec)
		if !executor.IsRejection(err) {
			t.Errorf("Validate(%v) = %v, want a rejection", spec, err)
		}
		if _, err := e.Execute(t.Context(), spec, nil); !executor.IsRejection(err) {
			t.Errorf("Execute(%v) = %v, want a rejection", spec, err)
		}
	}
	if err := e.Validate(&flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Backup{Backup: &flotillav1.BackupCommand{}}}); !strings.Contains(err.Error(), "not backup") {
		t.Errorf("rejection %q does not name the kind", err)
	}
}

// TestExecuteRejectsBeforeTouchingDocker checks that Execute applies the
// guard rails itself: a runner that skipped Validate changes nothing.
func TestExecuteRejectsBeforeTouchingDocker(t *testing.T) {
	e := newTestExecutor(t, nil, func(c *Config) {
		c.Host = "unix:///nonexistent/docker.sock"
		c.AllowedRegistries = []string{"docker.io"}
	})
	for _, spec := range []*flotillav1.CommandSpec{
		pullSpec("ghcr.io/org/app:1"),
		pullSpec("$(id)"),
		restartSpec("web;x", ""),
		restartSpec("web", "ghcr.io/org/app:1"),
	} {
		if _, err := e.Execute(t.Context(), spec, nil); !executor.IsRejection(err) {
			t.Errorf("Execute(%v) = %v, want a rejection", spec, err)
		}
	}
}

func checkValidation(t *testing.T, err error, wantErr string) {
	t.Helper()
	if wantErr == "" {
		if err != nil {
			t.Fatalf("rejected: %v", err)
		}
		return
	}
	if !executor.IsRejection(err) {
		t.Fatalf("got %v, want a *Rejection", err)
	}
	if !strings.Contains(err.Error(), wantErr) {
		t.Errorf("rejection %q does not say %q", err, wantErr)
	}
}
