package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"flotilla.dev/e2e/internal/fixture"
	"flotilla.dev/e2e/internal/grpcurl"
)

const registerMethod = "/flotilla.v1.AgentService/Register"

// lostAfter5s is the agent_lost_after of the control planes in these tests.
var lostAfter5s = withFlags("-agent-lost-after", "5s")

// TestSecondControlPlaneOnDataDirExits: a second control plane started on
// the data directory of a running one exits non-zero at once, naming the
// lock file and the first one's PID, and never serves.
func TestSecondControlPlaneOnDataDirExits(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test; run without -short")
	}
	cpBin := fixture.Binary(t, "flotilla-controlplane")
	first := startControlPlane(t, t.TempDir(), withName("controlplane-1"), lostAfter5s)

	began := time.Now()
	second := fixture.StartProcess(t, "controlplane-2", cpBin, nil, "-data-dir", first.dataDir,
		"-listen", fixture.FreeAddr(t), "-metrics-listen", fixture.FreeAddr(t))
	code := second.Wait(t, 5*time.Second)
	took := time.Since(began)
	out := second.Output()
	lockFile := filepath.Join(first.dataDir, "flotilla.lock")
	if code == 0 || !strings.Contains(out, lockFile) || !strings.Contains(out, fmt.Sprintf("PID %d", first.proc.PID())) {
		t.Fatalf("second control plane: exit %d after %s, output:\n%s\nwant a non-zero exit naming %s and PID %d", code, took, out, lockFile, first.proc.PID())
	}
	t.Logf("second control plane exited %d after %s: %s", code, took.Round(time.Millisecond), strings.TrimSpace(out))
	if err := first.api.Serving(); err != nil {
		t.Errorf("the first control plane stopped serving: %v", err)
	}
}

// TestControlPlaneRestoreOnNewHost takes a backup of a running control
// plane with history (an agent, a command, a rollout, audit events), kills
// it, restores the archive into a new data directory as on a replacement
// host, starts a control plane there on the same address, and checks that
// the agent comes back under its own ID with its certificate, without
// registering again, and that the history and audit log are intact.
func TestControlPlaneRestoreOnNewHost(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test; run without -short")
	}
	cpBin, agentBin := fixture.Binary(t, "flotilla-controlplane"), fixture.Binary(t, "flotilla-agent")
	dir := t.TempDir()
	old := startControlPlane(t, filepath.Join(dir, "old-host"), withName("controlplane-old"), lostAfter5s)

	agentID := enrollAgent(t, old.api, agentBin, dir)
	commandID := runFailingPull(t, old.api, agentID)
	var rolloutID string
	t.Run("rollout history", func(t *testing.T) { rolloutID = runFailingRollout(t, old.api) })
	auditBefore := auditEvents(t, old.api)
	if countMethod(auditBefore, registerMethod) != 1 {
		t.Fatalf("audit log before the backup has %d registrations, want 1", countMethod(auditBefore, registerMethod))
	}

	archive := filepath.Join(dir, "controlplane.backup")
	out, err := exec.Command(cpBin, "backup", "-data-dir", old.dataDir, "--out", archive).CombinedOutput()
	if err != nil {
		t.Fatalf("backup while the control plane runs: %v\n%s", err, out)
	}
	t.Logf("$ flotilla-controlplane backup --out %s\n%s", archive, out)
	if info, err := os.Stat(archive); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("archive: %v, mode %v; want 0600", err, info.Mode().Perm())
	}

	// The old host is lost: kill -9, and its data directory is never used again.
	old.proc.Signal(syscall.SIGKILL)
	old.proc.Wait(t, 5*time.Second)
	newDir := filepath.Join(dir, "new-host", "data")
	out, err = exec.Command(cpBin, "restore", "--from", archive, "--data-dir", newDir).CombinedOutput()
	if err != nil {
		t.Fatalf("restore: %v\n%s", err, out)
	}
	t.Logf("$ flotilla-controlplane restore --from %s --data-dir %s\n%s", archive, newDir, out)
	restored := startControlPlane(t, dir, withName("controlplane-new"), withDataDir(newDir), withAddr(old.api.Addr), lostAfter5s)

	checkAgentBack(t, restored.api, agentID)
	checkHistory(t, restored.api, commandID, rolloutID)
	auditAfter := auditEvents(t, restored.api)
	for _, e := range auditBefore {
		if !slices.Contains(auditAfter, e) {
			t.Errorf("audit event %+v is missing after the restore", e)
		}
	}
	if n := countMethod(auditAfter, registerMethod); n != 1 {
		t.Errorf("audit log after the restore has %d registrations, want the one from before (no re-enrollment)", n)
	}
}

// enrollAgent starts an agent with a single-use join token and returns its
// ID once it is connected.
func enrollAgent(t *testing.T, g grpcurl.Client, agentBin, dir string) string {
	t.Helper()
	join := g.CreateJoinToken(t, "restore e2e", 1)
	fixture.StartProcess(t, "agent", agentBin, []string{"FLOTILLA_JOIN_TOKEN=" + join.Token, "FLOTILLA_CONTROL_PLANE_CA_SHA256=" + join.CACertSHA256},
		"-control-plane.address", g.Addr, "-state-dir", filepath.Join(dir, "agent"), "-hostname", "e2e-restore-1",
		"-labels", "role=web", "-heartbeat-interval", "1s", "-log.format", "console")
	return onlyAgentConnected(t, g)
}

// runFailingPull runs a pull of an image from a registry that does not
// exist (no Docker registry is needed to fail), follows it to its end and
// returns its ID.
func runFailingPull(t *testing.T, g grpcurl.Client, agentID string) string {
	t.Helper()
	fc, _, _ := g.RunToEnd(t, fmt.Sprintf(`{"agent_ids": [%q], "spec": {"pull": {"image": "127.0.0.1:9/flotilla-e2e/absent:v1"}}, "reason": "history before the backup"}`,
		agentID), 60*time.Second)
	return fc.ID
}

// runFailingRollout gives the agent a managed container (created from an
// empty image, never started), defines its service and rolls out an image
// the agent refuses to pull, so that the rollout ends, failed, without a
// registry. Without Docker it skips (fails under FLOTILLA_E2E=1).
func runFailingRollout(t *testing.T, g grpcurl.Client) string {
	t.Helper()
	id := startIdleRollout(t, g, idleRollout{name: "restore", selector: "env=e2e",
		image: "127.0.0.1:9/flotilla-e2e/absent:v2", reason: "history before the backup"})
	fixture.Eventually(t, 90*time.Second, "the rollout to end", func() error {
		got, err := g.GetRollout(id)
		if err != nil {
			return err
		}
		if !grpcurl.Ended(got.State) {
			return fmt.Errorf("state %s", got.State)
		}
		t.Logf("rollout %s ended %s: %s", got.ID, got.State, got.Message)
		return nil
	})
	return id
}

// auditEvents lists the audit log, which must not be empty.
func auditEvents(t *testing.T, g grpcurl.Client) []grpcurl.AuditEvent {
	t.Helper()
	var resp grpcurl.ListAuditEventsResponse
	if err := g.Call(grpcurl.AdminService+"ListAuditEvents", map[string]any{"page_size": 1000}, &resp); err != nil {
		t.Fatal(err)
	}
	if len(resp.Events) == 0 {
		t.Fatal("the audit log is empty")
	}
	return resp.Events
}

// countMethod counts the events of calls to method.
func countMethod(events []grpcurl.AuditEvent, method string) int {
	n := 0
	for _, e := range events {
		if e.Method == method {
			n++
		}
	}
	return n
}

// checkAgentBack waits for the agent to reconnect to the restored control
// plane under its own ID: its stream is accepted only with a client
// certificate that the restored CA verifies.
func checkAgentBack(t *testing.T, g grpcurl.Client, agentID string) {
	t.Helper()
	began := time.Now()
	fixture.Eventually(t, 60*time.Second, "the agent to reconnect to the restored control plane", func() error {
		agents, err := g.ListAgents("")
		if err != nil {
			return err
		}
		if len(agents) != 1 || agents[0].ID != agentID || agents[0].State != "AGENT_STATE_CONNECTED" {
			return fmt.Errorf("agents: %+v, want only %s connected", agents, agentID)
		}
		return nil
	})
	t.Logf("agent %s reconnected %s after the restored control plane served", agentID, time.Since(began).Round(100*time.Millisecond))
}

// checkHistory checks that the command and the rollout from before the
// backup are listed by the restored control plane, in the state they
// ended in.
func checkHistory(t *testing.T, g grpcurl.Client, commandID, rolloutID string) {
	t.Helper()
	var cmds grpcurl.ListCommandsResponse
	if err := g.Call(grpcurl.FleetService+"ListCommands", map[string]any{}, &cmds); err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(cmds.Commands, func(c grpcurl.FleetCommand) bool {
		return c.ID == commandID && c.State != "FLEET_COMMAND_STATE_RUNNING" && c.Reason == "history before the backup"
	}) {
		t.Errorf("ListCommands after the restore = %s, want the ended command %s", grpcurl.Dump(cmds), commandID)
	}
	if rolloutID == "" {
		t.Log("no rollout to look for: the rollout step was skipped (no Docker)")
		return
	}
	var rollouts grpcurl.ListRolloutsResponse
	if err := g.Call(grpcurl.RolloutService+"ListRollouts", map[string]any{"service": "restore-e2e"}, &rollouts); err != nil {
		t.Fatal(err)
	}
	if len(rollouts.Rollouts) != 1 || rollouts.Rollouts[0].ID != rolloutID {
		t.Errorf("ListRollouts after the restore = %s, want rollout %s", grpcurl.Dump(rollouts), rolloutID)
	}
}
