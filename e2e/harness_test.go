package e2e

import (
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
}

// startControlPlane starts the control plane with its data in dir/cp and
// extra flags, waits until it serves and reads its admin token.
func startControlPlane(t *testing.T, dir string, extra ...string) controlPlane {
	t.Helper()
	cpBin, grpcurlBin := fixture.Binary(t, "flotilla-controlplane"), fixture.Binary(t, "grpcurl")
	data := filepath.Join(dir, "cp")
	cp := controlPlane{metricsAddr: fixture.FreeAddr(t)}
	cp.api = grpcurl.Client{Path: grpcurlBin, Addr: fixture.FreeAddr(t), CAFile: filepath.Join(data, "ca.crt")}
	args := append([]string{"-data-dir", data, "-listen", cp.api.Addr, "-metrics-listen", cp.metricsAddr,
		"-log-format", "console"}, extra...)
	cp.proc = fixture.StartProcess(t, "controlplane", cpBin, nil, args...)
	fixture.Eventually(t, 15*time.Second, "the control plane to serve", cp.api.Serving)
	token, err := os.ReadFile(filepath.Join(data, "admin.token"))
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
