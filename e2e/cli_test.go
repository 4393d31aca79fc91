package e2e

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"flotilla.dev/e2e/internal/fixture"
	"flotilla.dev/e2e/internal/rollouttest"
)

// flotilla runs bin/flotilla against the rollout environment's control
// plane (the environment variables an engineer exports) and returns its
// exit code and combined output, logged.
func (r *rolloutRun) flotilla(t *testing.T, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(fixture.Binary(t, "flotilla"), args...)
	cmd.Env = append(os.Environ(), "FLOTILLA_ADDRESS="+r.env.g.Addr, "FLOTILLA_CA="+r.env.g.CAFile,
		"FLOTILLA_TOKEN="+r.env.g.Token, "FLOTILLA_CONFIG="+filepath.Join(t.TempDir(), "config.yaml"))
	out, err := cmd.CombinedOutput()
	code := 0
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		code = exit.ExitCode()
	} else if err != nil {
		t.Fatalf("flotilla %s: %v", strings.Join(args, " "), err)
	}
	t.Logf("$ flotilla %s → exit %d\n%s", strings.Join(args, " "), code, out)
	return code, string(out)
}

// testCLI rolls the service back to v1 and then out to a release whose
// health check fails, both with `flotilla rollout start --watch` as an
// engineer or a CI job would: the exit code is 0 for the release that went
// live and 11 for the one the canary caught and rolled back, which names
// the failed gate with the health response the agent captured.
func (r *rolloutRun) testCLI(t *testing.T) {
	env := r.env
	code, out := r.flotilla(t, "rollout", "start", rollouttest.Service, "--image", env.images["v1"], "--watch",
		"--timeout", rollouttest.Timeout.String(), "--reason", "e2e: back to v1 with the flotilla command")
	if code != 0 || !strings.Contains(out, "SUCCEEDED") {
		t.Fatalf("v1: exit %d, want 0 with the rollout SUCCEEDED", code)
	}
	code, out = r.flotilla(t, "rollout", "start", rollouttest.Service, "--image", env.images[fixture.VersionUnhealthy], "--watch",
		"--timeout", rollouttest.Timeout.String())
	if code != 11 || !strings.Contains(out, "ROLLED_BACK") || !strings.Contains(out, "failed gate: health gate on host") {
		t.Errorf("unhealthy release: exit %d, want 11 (rolled back) naming the failed health gate", code)
	}
}
