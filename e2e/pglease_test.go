package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"flotilla.dev/e2e/internal/fixture"
	"flotilla.dev/e2e/internal/grpcurl"
)

// pgLeaseTTL is the lease of the control planes in the lease test: a
// standby takes over at most this long after the active one dies.
const pgLeaseTTL = 4 * time.Second

// TestPostgresOneActiveControlPlane runs two control planes on one
// PostgreSQL database, each with a data directory of its own holding the
// same CA: the second exits at once naming the holder when told not to
// wait; told to wait, it stays a standby that serves nothing, and when the
// first is killed it takes over within the lease's TTL; the agent, which
// reaches them through one address (a forwarder, as a load balancer),
// reconnects to it under its own ID, the command run before is listed, and
// the rollout the first one started is driven to its end by the second.
func TestPostgresOneActiveControlPlane(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test; run without -short")
	}
	cpBin := fixture.Binary(t, "flotilla-controlplane")
	dir := t.TempDir()
	db := startStoreDB(t, dir)
	ttl := db.flags("-store-lease-ttl", pgLeaseTTL.String())
	first := startControlPlane(t, filepath.Join(dir, "host-1"), withName("controlplane-1"), ttl, lostAfter5s)
	holder := fmt.Sprintf("/%d/", first.proc.PID())
	secondDir := filepath.Join(dir, "host-2", "cp")
	copyCredentials(t, first.dataDir, secondDir)
	secondAddr := fixture.FreeAddr(t)
	secondArgs := []string{"-data-dir", secondDir, "-listen", secondAddr, "-log-format", "console",
		"-store-driver", "postgres", "-store-dsn", db.dsn(), "-store-password-file", db.passwordFile,
		"-store-lease-ttl", pgLeaseTTL.String(), "-agent-lost-after", "5s"}

	t.Run("no wait: exits naming the holder", func(t *testing.T) {
		began := time.Now()
		p := fixture.StartProcess(t, "controlplane-2-nowait", cpBin, nil,
			append(slices.Clone(secondArgs), "-metrics-listen", fixture.FreeAddr(t), "-store-lease-wait=false")...)
		code := p.Wait(t, 10*time.Second)
		out := p.Output()
		if code == 0 || !strings.Contains(out, holder) || !strings.Contains(out, "another control plane is active") || strings.Contains(out, db.password) {
			t.Fatalf("exit %d after %s, output:\n%s\nwant a non-zero exit naming the holder (%s) and not the password", code, time.Since(began), out, holder)
		}
		t.Logf("exited %d after %s: %s", code, time.Since(began).Round(time.Millisecond), lastLine(out))
	})

	// The agent reaches whichever control plane accepts connections, as
	// through a load balancer.
	lb := startForwarder(t, first.api.Addr, secondAddr)
	reg := startHeldRegistry(t)
	agentID := startAgentVia(t, first.api, lb.addr, dir, reg.addr)
	commandID := runFailingPull(t, first.api, agentID)
	// A rollout in progress when the first one dies: its pull is held by
	// the registry until the standby has taken over.
	rolloutID := startHeldRollout(t, first.api, reg.addr+"/flotilla-e2e/held:v2")
	fixture.Eventually(t, 30*time.Second, "the rollout's pull to reach the registry", func() error {
		if reg.accepted() == 0 {
			return fmt.Errorf("no connection yet")
		}
		return nil
	})

	standbyMetrics := fixture.FreeAddr(t)
	standby := fixture.StartProcess(t, "controlplane-2-standby", cpBin, nil, append(slices.Clone(secondArgs), "-metrics-listen", standbyMetrics)...)
	fixture.Eventually(t, 15*time.Second, "the standby to say it waits", func() error {
		if standby.Exited() {
			return fmt.Errorf("the standby exited:\n%s", standby.Output())
		}
		if !strings.Contains(standby.Output(), holder) {
			return fmt.Errorf("no mention of the holder %s yet:\n%s", holder, standby.Output())
		}
		return nil
	})
	// Several renewals of the first one's lease later, the standby still
	// waits and serves nothing.
	time.Sleep(2 * pgLeaseTTL)
	if standby.Exited() {
		t.Fatalf("the standby exited while the first control plane was alive:\n%s", standby.Output())
	}
	if strings.Contains(standby.Output(), "lease acquired") {
		t.Fatalf("the standby acquired the lease while the first control plane was alive:\n%s", standby.Output())
	}
	if code, _, err := httpGet("http://" + standbyMetrics + "/healthz"); err == nil {
		t.Fatalf("the standby serves /healthz (%d) while the first control plane is active", code)
	}
	if _, err := first.api.ListAgents(""); err != nil {
		t.Fatalf("the first control plane stopped answering while the standby waited: %v", err)
	}

	second := first.api
	second.Addr = secondAddr
	first.proc.Signal(syscall.SIGKILL)
	killed := time.Now()
	first.proc.Wait(t, 5*time.Second)
	fixture.Eventually(t, 3*pgLeaseTTL, "the standby to take over", func() error {
		if standby.Exited() {
			return fmt.Errorf("the standby exited:\n%s", standby.Output())
		}
		code, _, err := httpGet("http://" + standbyMetrics + "/healthz")
		if err != nil || code != 200 {
			return fmt.Errorf("/healthz: %d %v", code, err)
		}
		return second.Serving()
	})
	took := time.Since(killed)
	t.Logf("the standby served %s after the active control plane was killed (lease TTL %s)", took.Round(100*time.Millisecond), pgLeaseTTL)
	if took > pgLeaseTTL+2*time.Second {
		t.Errorf("takeover took %s, want within the lease TTL %s (plus the time to start serving)", took, pgLeaseTTL)
	}
	checkAgentBack(t, second, agentID)
	var cmds grpcurl.ListCommandsResponse
	if err := second.Call(grpcurl.FleetService+"ListCommands", map[string]any{}, &cmds); err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(cmds.Commands, func(c grpcurl.FleetCommand) bool {
		return c.ID == commandID && c.State == "FLEET_COMMAND_STATE_FAILED"
	}) {
		t.Errorf("ListCommands on the new active control plane = %s, want the ended command %s", grpcurl.Dump(cmds), commandID)
	}

	// The new active control plane drives the rollout the dead one started.
	reg.release()
	fixture.Eventually(t, 60*time.Second, "the rollout to end on the new active control plane", func() error {
		ro, err := second.GetRollout(rolloutID)
		if err != nil {
			return err
		}
		// The host failed on the pull the registry let go, not otherwise.
		if !grpcurl.Ended(ro.State) || len(ro.Hosts) != 1 || !strings.Contains(ro.Hosts[0].Message, "held:v2") {
			return fmt.Errorf("rollout %s", grpcurl.Dump(ro))
		}
		t.Logf("rollout %s, started on the first control plane, ended %s on the second: %s; host: %s", rolloutID, ro.State, ro.Message, ro.Hosts[0].Message)
		return nil
	})
}

// copyCredentials copies the regular files of a control plane's data
// directory (CA, server certificate, admin token) into a new one, as an
// operator provisions a second host with the same CA.
func copyCredentials(t *testing.T, from, to string) {
	t.Helper()
	entries, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(to, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		fixture.WriteFile(t, filepath.Join(to, e.Name()), string(b), 0o600)
	}
}

// lastLine is the last non-empty line of a process's output.
func lastLine(out string) string {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	return lines[len(lines)-1]
}
