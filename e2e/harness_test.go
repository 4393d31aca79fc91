package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"flotilla.dev/e2e/internal/fixture"
	"flotilla.dev/e2e/internal/grpcurl"
)

// controlPlane is flotilla-controlplane running as a local process.
type controlPlane struct {
	proc *fixture.Process
	// api is grpcurl against it, with the admin token.
	api grpcurl.Client
	// metricsAddr is its /metrics and /healthz listener.
	metricsAddr string
	// dataDir is its data directory.
	dataDir string
}

// cpConfig is how startControlPlane runs a control plane.
type cpConfig struct {
	// name names the process in the failure report.
	name string
	// dataDir is its data directory.
	dataDir string
	// addr is its gRPC address.
	addr string
	// flags follow the ones startControlPlane always passes.
	flags []string
}

// cpOption changes one thing of a cpConfig.
type cpOption func(*cpConfig)

// withName names the process in the failure report (default "controlplane").
func withName(name string) cpOption { return func(c *cpConfig) { c.name = name } }

// withDataDir puts the data in path instead of dir/cp, e.g. a directory
// a backup was restored into.
func withDataDir(path string) cpOption { return func(c *cpConfig) { c.dataDir = path } }

// withAddr serves gRPC on addr instead of a free address, e.g. the
// address of a control plane this one replaces.
func withAddr(addr string) cpOption { return func(c *cpConfig) { c.addr = addr } }

// withFlags adds command-line flags.
func withFlags(flags ...string) cpOption {
	return func(c *cpConfig) { c.flags = append(c.flags, flags...) }
}

// startControlPlane starts the control plane with its data in dir/cp
// unless opts say otherwise, waits until it serves and reads its admin
// token.
func startControlPlane(t *testing.T, dir string, opts ...cpOption) controlPlane {
	t.Helper()
	cpBin, grpcurlBin := fixture.Binary(t, "flotilla-controlplane"), fixture.Binary(t, "grpcurl")
	c := cpConfig{name: "controlplane", dataDir: filepath.Join(dir, "cp")}
	for _, o := range opts {
		o(&c)
	}
	if c.addr == "" {
		c.addr = fixture.FreeAddr(t)
	}
	cp := controlPlane{metricsAddr: fixture.FreeAddr(t), dataDir: c.dataDir}
	cp.api = grpcurl.Client{Path: grpcurlBin, Addr: c.addr, CAFile: filepath.Join(c.dataDir, "ca.crt")}
	args := append([]string{"-data-dir", c.dataDir, "-listen", cp.api.Addr, "-metrics-listen", cp.metricsAddr,
		"-log-format", "console"}, c.flags...)
	cp.proc = fixture.StartProcess(t, c.name, cpBin, nil, args...)
	fixture.Eventually(t, 15*time.Second, c.name+" to serve", func() error {
		if cp.proc.Exited() {
			return fmt.Errorf("%s exited:\n%s", c.name, cp.proc.Output())
		}
		return cp.api.Serving()
	})
	token, err := os.ReadFile(filepath.Join(c.dataDir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	cp.api.Token = strings.TrimSpace(string(token))
	return cp
}

// httpGet returns the status and body of a GET.
func httpGet(url string) (int, string, error) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}
