package commands

import (
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"flotilla.dev/controlplane/internal/fault"
	flotillav1 "flotilla.dev/gen/flotilla/v1"
	"flotilla.dev/pkg/command"
)

const digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func pull(image string) *flotillav1.CommandSpec {
	return &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Pull{Pull: &flotillav1.PullCommand{Image: image}}}
}

func restart(container, image string, stop *durationpb.Duration) *flotillav1.CommandSpec {
	return &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Restart{Restart: &flotillav1.RestartCommand{
		Container: container, Image: image, StopTimeout: stop}}}
}

func backup(db string) *flotillav1.CommandSpec {
	return &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Backup{Backup: &flotillav1.BackupCommand{Database: db}}}
}

func drain(upstream, server string) *flotillav1.CommandSpec {
	return &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Drain{Drain: &flotillav1.DrainCommand{Upstream: upstream, Server: server}}}
}

func undrain(upstream, server string) *flotillav1.CommandSpec {
	return &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Undrain{Undrain: &flotillav1.UndrainCommand{Upstream: upstream, Server: server}}}
}

func TestValidateSpecAccepts(t *testing.T) {
	tests := []struct {
		name string
		spec *flotillav1.CommandSpec
	}{
		{"pull name:tag", pull("nginx:1.27")},
		{"pull registry with port", pull("registry.example.com:5000/shop/web:1.4.2")},
		{"pull by digest", pull("ghcr.io/acme/web@" + digest)},
		{"pull tag and digest", pull("web:1.0@" + digest)},
		{"restart without image", restart("web", "", nil)},
		{"restart with image", restart("shop_web.1-blue", "registry.example.com/shop/web:2", nil)},
		{"restart stop timeout 0", restart("web", "", durationpb.New(0))},
		{"restart stop timeout 10m", restart("web", "", durationpb.New(10*time.Minute))},
		{"restart container of 128 characters", restart("w"+strings.Repeat("x", 127), "", nil)},
		{"backup", backup("shop")},
		{"backup with _ and -", backup("shop_db-2")},
		{"backup name of 63 characters", backup(strings.Repeat("d", 63))},
		{"drain IPv4", drain("shop", "10.0.0.1:8080")},
		{"drain IPv6", drain("shop.v2", "[2001:db8::1]:80")},
		{"drain DNS name", drain("shop_backend", "web-1.internal.example.com:8080")},
		{"drain port 65535", drain("shop", "web-1:65535")},
		{"undrain", undrain("shop", "10.0.0.1:8080")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := ValidateSpec("spec", tt.spec); err != nil {
				t.Fatalf("ValidateSpec = %v, want nil", err)
			}
		})
	}
}

func TestValidateSpecRefuses(t *testing.T) {
	tests := []struct {
		name  string
		spec  *flotillav1.CommandSpec
		field string
	}{
		{"nil spec", nil, "spec"},
		{"no kind", &flotillav1.CommandSpec{}, "spec"},

		{"pull without image", pull(""), "spec.pull.image"},
		{"pull without message", &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Pull{}}, "spec.pull.image"},
		{"pull upper case", pull("UPPER/Case:1"), "spec.pull.image"},
		{"pull without tag", pull("app"), "spec.pull.image"},
		{"pull with shell", pull("a;rm -rf /"), "spec.pull.image"},
		{"pull with space", pull("web:1.0 --privileged"), "spec.pull.image"},
		{"pull with bad digest", pull("web@sha256:1234"), "spec.pull.image"},
		{"pull too long", pull("registry.example.com/" + strings.Repeat("a", 500) + ":1"), "spec.pull.image"},

		{"restart without container", restart("", "", nil), "spec.restart.container"},
		{"restart container with shell", restart("web;reboot", "", nil), "spec.restart.container"},
		{"restart container with leading dash", restart("-web", "", nil), "spec.restart.container"},
		{"restart container with slash", restart("../web", "", nil), "spec.restart.container"},
		{"restart container too long", restart("w"+strings.Repeat("x", 128), "", nil), "spec.restart.container"},
		{"restart image without tag", restart("web", "app", nil), "spec.restart.image"},
		{"restart image with shell", restart("web", "web:1;reboot", nil), "spec.restart.image"},
		{"restart negative stop timeout", restart("web", "", durationpb.New(-time.Second)), "spec.restart.stop_timeout"},
		{"restart stop timeout over 10m", restart("web", "", durationpb.New(10*time.Minute+time.Second)), "spec.restart.stop_timeout"},
		{"restart invalid stop timeout", restart("web", "", &durationpb.Duration{Seconds: 1, Nanos: -1}), "spec.restart.stop_timeout"},

		{"backup without database", backup(""), "spec.backup.database"},
		{"backup with shell", backup("$(id)"), "spec.backup.database"},
		{"backup with space", backup("shop db"), "spec.backup.database"},
		{"backup with dot", backup("shop.db"), "spec.backup.database"},
		{"backup name too long", backup(strings.Repeat("d", 64)), "spec.backup.database"},

		{"drain without upstream", drain("", "10.0.0.1:80"), "spec.drain.upstream"},
		{"drain upstream with brace", drain("shop}", "10.0.0.1:80"), "spec.drain.upstream"},
		{"drain server with nginx syntax", drain("shop", "10.0.0.1:80; include x"), "spec.drain.server"},
		{"drain server without port", drain("shop", "10.0.0.1"), "spec.drain.server"},
		{"drain server port 0", drain("shop", "10.0.0.1:0"), "spec.drain.server"},
		{"drain server port too big", drain("shop", "10.0.0.1:65536"), "spec.drain.server"},
		{"drain server without host", drain("shop", ":80"), "spec.drain.server"},
		{"drain server bad host", drain("shop", "web_1!:80"), "spec.drain.server"},
		{"drain server with newline", drain("shop", "web-1\n:80"), "spec.drain.server"},

		{"undrain without upstream", undrain("", "10.0.0.1:80"), "spec.undrain.upstream"},
		{"undrain server with nginx syntax", undrain("shop", "10.0.0.1:80; include x"), "spec.undrain.server"},
		{"undrain server without port", undrain("shop", "web-1"), "spec.undrain.server"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateSpec("spec", tt.spec)
			if !errors.Is(err, fault.ErrInvalid) {
				t.Fatalf("ValidateSpec = %v, want InvalidArgument", err)
			}
			if msg := err.Error(); !strings.HasPrefix(msg, tt.field+": ") {
				t.Fatalf("message %q does not start with the field %q", msg, tt.field)
			}
		})
	}
}

func TestValidateSpecPrefix(t *testing.T) {
	err := ValidateSpec("steps[2].spec", backup("$(id)"))
	if msg := err.Error(); !strings.HasPrefix(msg, "steps[2].spec.backup.database: ") {
		t.Fatalf("message %q does not carry the prefix", msg)
	}
}

func TestKindAndDefaultTimeout(t *testing.T) {
	tests := []struct {
		spec    *flotillav1.CommandSpec
		kind    string
		timeout time.Duration
	}{
		{pull("web:1"), command.KindPull, 10 * time.Minute},
		{restart("web", "", nil), command.KindRestart, 5 * time.Minute},
		{backup("shop"), command.KindBackup, time.Hour},
		{drain("shop", "web:80"), command.KindDrain, time.Minute},
		{undrain("shop", "web:80"), command.KindUndrain, time.Minute},
		{nil, "", time.Minute},
	}
	for _, tt := range tests {
		if got := command.Kind(tt.spec); got != tt.kind {
			t.Errorf("command.Kind(%v) = %q, want %q", tt.spec, got, tt.kind)
		}
		if got := DefaultTimeout(tt.kind); got != tt.timeout {
			t.Errorf("DefaultTimeout(%q) = %s, want %s", tt.kind, got, tt.timeout)
		}
		if DefaultTimeout(tt.kind) > MaxTimeout {
			t.Errorf("DefaultTimeout(%q) exceeds MaxTimeout", tt.kind)
		}
	}
}
