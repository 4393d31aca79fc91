package nginx

import (
	"net"
	"os"
	"strconv"
	"strings"
	"testing"

	"flotilla.dev/agent/internal/executor"
	flotillav1 "flotilla.dev/gen/flotilla/v1"
)

// FuzzValidate feeds the nginx executor's Validate the upstream names and
// server addresses a control plane could send, as drains and undrains. It
// needs no nginx.
//
// Properties: nothing panics; a refusal is a *executor.Rejection; an
// accepted command names the configured upstream, and a server that is
// host:port with a port from 1 to 65535 and no character that could end or
// change an nginx directive or a command line.
//
// The seed corpus is in testdata/fuzz/FuzzValidate.
func FuzzValidate(f *testing.F) {
	self, err := os.Executable()
	if err != nil {
		f.Fatal(err)
	}
	e, err := New(Config{Binary: self, Upstreams: map[string]Upstream{"app": {File: "/etc/nginx/conf.d/app.conf"}}}, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, upstream, server string, drain bool) {
		spec := &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Undrain{Undrain: &flotillav1.UndrainCommand{Upstream: upstream, Server: server}}}
		if drain {
			spec = &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Drain{Drain: &flotillav1.DrainCommand{Upstream: upstream, Server: server}}}
		}
		err := e.Validate(spec)
		if err != nil {
			if !executor.IsRejection(err) {
				t.Fatalf("Validate returned %T %v, want a *executor.Rejection", err, err)
			}
			return
		}
		if upstream != "app" {
			t.Fatalf("upstream %q accepted", upstream)
		}
		if i := strings.IndexAny(server, " \t\r\n\f\v;{}#\"'`$\\|&<>()*"); i >= 0 {
			t.Fatalf("server %q accepted with %q", server, server[i])
		}
		_, port, err := net.SplitHostPort(server)
		if err != nil {
			t.Fatalf("server %q accepted but is not host:port: %v", server, err)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			t.Fatalf("server %q accepted with port %q", server, port)
		}
	})
}
