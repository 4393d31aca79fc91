package nginx

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"flotilla.dev/agent/internal/executor"
	flotillav1 "flotilla.dev/gen/flotilla/v1"
	"go.uber.org/zap/zaptest"
)

func drainSpec(upstream, server string) *flotillav1.CommandSpec {
	return &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Drain{Drain: &flotillav1.DrainCommand{Upstream: upstream, Server: server}}}
}

func undrainSpec(upstream, server string) *flotillav1.CommandSpec {
	return &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Undrain{Undrain: &flotillav1.UndrainCommand{Upstream: upstream, Server: server}}}
}

// newOfflineExecutor returns an Executor for tests that never reach nginx:
// its binary is the test binary, which only has to exist.
func newOfflineExecutor(t *testing.T, file string) *Executor {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(Config{Binary: self, Upstreams: map[string]Upstream{"app": {File: file}}}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return e
}

func TestValidate(t *testing.T) {
	e := newOfflineExecutor(t, "/etc/nginx/conf.d/app.conf")
	tests := []struct {
		name string
		spec *flotillav1.CommandSpec
		want string // substring of the rejection; "" to accept
	}{
		{"drain an IPv4 server", drainSpec("app", "10.0.0.1:80"), ""},
		{"undrain an IPv6 server", undrainSpec("app", "[2001:db8::1]:8080"), ""},
		{"a DNS name", drainSpec("app", "web-1.prod.example.com:443"), ""},
		{"a compose service name", drainSpec("app", "app_web_1:8080"), ""},
		{"unknown upstream", drainSpec("api", "10.0.0.1:80"), `drain.upstream: upstream "api" is not in nginx.upstreams`},
		{"empty upstream", undrainSpec("", "10.0.0.1:80"), "undrain.upstream: is required"},
		{"empty server", drainSpec("app", ""), "drain.server: is required"},
		{"directive injection", drainSpec("app", "10.0.0.1:80; include /etc/passwd"), "drain.server: "},
		{"command substitution", drainSpec("app", "$(id):80"), "drain.server: "},
		{"backticks", undrainSpec("app", "`id`:80"), "undrain.server: "},
		{"a blank", drainSpec("app", "a b:80"), "drain.server: "},
		{"a block", drainSpec("app", "a{b}:80"), "drain.server: "},
		{"a comment", drainSpec("app", "a#b:80"), "drain.server: "},
		{"double quotes", drainSpec("app", `"a":80`), "drain.server: "},
		{"single quotes", drainSpec("app", `'a':80`), "drain.server: "},
		{"a pipe", drainSpec("app", "a|b:80"), "drain.server: "},
		{"an ampersand", drainSpec("app", "a&b:80"), "drain.server: "},
		{"a newline", drainSpec("app", "a:80\nserver b:80"), "drain.server: "},
		{"a backslash", drainSpec("app", `a\;:80`), "drain.server: "},
		{"a variable", drainSpec("app", "${host}:80"), "drain.server: "},
		{"no port", drainSpec("app", "10.0.0.1"), "drain.server: "},
		{"port zero", drainSpec("app", "10.0.0.1:0"), "drain.server: "},
		{"port too big", drainSpec("app", "10.0.0.1:65536"), "drain.server: "},
		{"signed port", drainSpec("app", "10.0.0.1:+80"), "drain.server: "},
		{"named port", drainSpec("app", "10.0.0.1:http"), "drain.server: "},
		{"empty host", drainSpec("app", ":80"), "drain.server: "},
		{"unix socket", drainSpec("app", "unix:/run/app.sock"), "drain.server: "},
		{"trailing dot", drainSpec("app", "example.com.:80"), "drain.server: "},
		{"IPv6 zone", drainSpec("app", "[fe80::1%eth0]:80"), "drain.server: "},
		{"another kind", &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Pull{Pull: &flotillav1.PullCommand{Image: "x"}}}, "only drain, undrain and swap_servers commands, not pull"},
		{"an empty spec", &flotillav1.CommandSpec{}, "only drain, undrain and swap_servers"},
		{"a nil spec", nil, "only drain, undrain and swap_servers"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := e.Validate(tt.spec)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if !executor.IsRejection(err) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate = %v, want a rejection containing %q", err, tt.want)
			}
			// Execute refuses the same way, before touching anything.
			if _, err := e.Execute(context.Background(), tt.spec, nil); !executor.IsRejection(err) {
				t.Fatalf("Execute = %v, want a rejection", err)
			}
		})
	}
}

// TestExecuteWithoutNginx covers the failures found before nginx runs: the
// file is left exactly as it was.
func TestExecuteWithoutNginx(t *testing.T) {
	tests := []struct {
		name    string
		content string // "" for a missing file
		spec    *flotillav1.CommandSpec
		want    string
	}{
		{"server not in the upstream", "upstream app { server 10.0.0.2:80; }\n",
			drainSpec("app", "10.0.0.1:80"), "drain: server 10.0.0.1:80 is not in upstream app ("},
		{"server only in a comment", "upstream app {\n  # server 10.0.0.1:80;\n  server 10.0.0.2:80;\n}\n",
			undrainSpec("app", "10.0.0.1:80"), "undrain: server 10.0.0.1:80 is not in upstream app ("},
		{"unparsable file", "upstream app { server 10.0.0.1:80;\n",
			drainSpec("app", "10.0.0.1:80"), "the file was not changed"},
		{"missing file", "", drainSpec("app", "10.0.0.1:80"), "cannot read the upstream file of nginx.upstreams.app"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "app.conf")
			if tt.content != "" {
				if err := os.WriteFile(file, []byte(tt.content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			e := newOfflineExecutor(t, file)
			res, err := e.Execute(context.Background(), tt.spec, nil)
			if err == nil || executor.IsRejection(err) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Execute = %v, %v; want a failure containing %q", res, err, tt.want)
			}
			if tt.content != "" {
				if got, _ := os.ReadFile(file); string(got) != tt.content {
					t.Errorf("file changed to %q", got)
				}
			}
			if entries, _ := os.ReadDir(filepath.Dir(file)); tt.content != "" && len(entries) != 1 {
				t.Errorf("the directory holds %d entries, want only the upstream file", len(entries))
			}
		})
	}
}

func TestExecuteHonoursContext(t *testing.T) {
	e := newOfflineExecutor(t, "/nonexistent/app.conf")
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := e.Execute(cancelled, drainSpec("app", "10.0.0.1:80"), nil); err == nil || !strings.Contains(err.Error(), "not started") {
		t.Errorf("Execute with a cancelled context = %v, want a failure", err)
	}

	e.lock <- struct{}{} // another change in progress
	defer e.release()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if _, err := e.Execute(ctx, drainSpec("app", "10.0.0.1:80"), nil); err == nil || !strings.Contains(err.Error(), "gave up waiting") {
		t.Errorf("Execute behind a busy lock = %v, want a failure for the abandoned wait", err)
	}
}
