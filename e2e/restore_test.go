package e2e

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/api/types/build"
	"github.com/moby/moby/client"

	"flotilla.dev/e2e/internal/fixture"
)

// auditEventJSON is the part of flotilla.v1.AuditEvent the tests read.
type auditEventJSON struct {
	ID        string `json:"id"`
	Principal string `json:"principal"`
	Method    string `json:"method"`
	Code      string `json:"code"`
}

type listAuditJSON struct {
	Events []auditEventJSON `json:"events"`
}

const registerMethod = "/flotilla.v1.AgentService/Register"

// controlPlane is a running flotilla-controlplane with its data directory.
type controlPlane struct {
	proc    *process
	dataDir string
	g       grpcurl
}

// startControlPlane starts the control plane on dataDir and waits until
// it serves and its admin token is readable.
func startControlPlane(t *testing.T, name, bin, dataDir, grpcAddr, httpAddr, grpcurlBin string) *controlPlane {
	t.Helper()
	p := start(t, name, bin, nil, "-data-dir", dataDir, "-listen", grpcAddr, "-metrics-listen", httpAddr,
		"-agent-lost-after", "5s", "-log-format", "console")
	g := grpcurl{path: grpcurlBin, addr: grpcAddr, caFile: filepath.Join(dataDir, "ca.crt")}
	eventually(t, 15*time.Second, name+" to serve", func() error {
		select {
		case <-p.done:
			return fmt.Errorf("exited: %v\n%s", p.err, p.out.String())
		default:
		}
		_, err := g.run(grpcAddr, "grpc.health.v1.Health/Check")
		return err
	})
	token, err := os.ReadFile(filepath.Join(dataDir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	g.token = strings.TrimSpace(string(token))
	return &controlPlane{proc: p, dataDir: dataDir, g: g}
}

// TestSecondControlPlaneOnDataDirExits: a second control plane started on
// the data directory of a running one exits non-zero at once, naming the
// lock file and the first one's PID, and never serves.
func TestSecondControlPlaneOnDataDirExits(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test; run without -short")
	}
	cpBin, grpcurlBin := binary(t, "flotilla-controlplane"), binary(t, "grpcurl")
	dir := filepath.Join(t.TempDir(), "cp")
	first := startControlPlane(t, "controlplane-1", cpBin, dir, freePort(t), freePort(t), grpcurlBin)

	began := time.Now()
	second := start(t, "controlplane-2", cpBin, nil, "-data-dir", dir, "-listen", freePort(t), "-metrics-listen", freePort(t))
	code := second.wait(t, 5*time.Second)
	took := time.Since(began)
	out := second.out.String()
	lockFile := filepath.Join(dir, "flotilla.lock")
	if code == 0 || !strings.Contains(out, lockFile) || !strings.Contains(out, fmt.Sprintf("PID %d", first.proc.cmd.Process.Pid)) {
		t.Fatalf("second control plane: exit %d after %s, output:\n%s\nwant a non-zero exit naming %s and PID %d", code, took, out, lockFile, first.proc.cmd.Process.Pid)
	}
	t.Logf("second control plane exited %d after %s: %s", code, took.Round(time.Millisecond), strings.TrimSpace(out))
	if _, err := first.g.run(first.g.addr, "grpc.health.v1.Health/Check"); err != nil {
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
	cpBin, agentBin, grpcurlBin := binary(t, "flotilla-controlplane"), binary(t, "flotilla-agent"), binary(t, "grpcurl")
	dir := t.TempDir()
	grpcAddr, httpAddr := freePort(t), freePort(t)
	old := startControlPlane(t, "controlplane-old", cpBin, filepath.Join(dir, "old-host"), grpcAddr, httpAddr, grpcurlBin)

	agentID := enrollAgent(t, old.g, agentBin, dir)
	commandID := runFailingPull(t, old.g, agentID)
	var rolloutID string
	t.Run("rollout history", func(t *testing.T) { rolloutID = runFailingRollout(t, old.g) })
	auditBefore := auditEvents(t, old.g)
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
	old.proc.signal(syscall.SIGKILL)
	old.proc.wait(t, 5*time.Second)
	newDir := filepath.Join(dir, "new-host", "data")
	out, err = exec.Command(cpBin, "restore", "--from", archive, "--data-dir", newDir).CombinedOutput()
	if err != nil {
		t.Fatalf("restore: %v\n%s", err, out)
	}
	t.Logf("$ flotilla-controlplane restore --from %s --data-dir %s\n%s", archive, newDir, out)
	restored := startControlPlane(t, "controlplane-new", cpBin, newDir, grpcAddr, freePort(t), grpcurlBin)

	checkAgentBack(t, restored.g, agentID)
	checkHistory(t, restored.g, commandID, rolloutID)
	auditAfter := auditEvents(t, restored.g)
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
func enrollAgent(t *testing.T, g grpcurl, agentBin, dir string) string {
	t.Helper()
	var join struct {
		Token        string `json:"token"`
		CACertSHA256 string `json:"caCertSha256"`
	}
	if err := g.call("flotilla.v1.FleetService/CreateJoinToken", map[string]any{
		"description": "restore e2e", "labels": map[string]string{"env": "e2e"}, "ttl": "300s", "max_uses": 1,
	}, &join); err != nil {
		t.Fatal(err)
	}
	start(t, "agent", agentBin, []string{"FLOTILLA_JOIN_TOKEN=" + join.Token, "FLOTILLA_CONTROL_PLANE_CA_SHA256=" + join.CACertSHA256},
		"-control-plane.address", g.addr, "-state-dir", filepath.Join(dir, "agent"), "-hostname", "e2e-restore-1",
		"-labels", "role=web", "-heartbeat-interval", "1s", "-log.format", "console")
	var id string
	eventually(t, 20*time.Second, "the agent to connect", func() error {
		var list listAgentsJSON
		if err := g.call("flotilla.v1.FleetService/ListAgents", map[string]any{}, &list); err != nil {
			return err
		}
		if len(list.Agents) != 1 || list.Agents[0].State != "AGENT_STATE_CONNECTED" {
			return fmt.Errorf("agents: %+v", list.Agents)
		}
		id = list.Agents[0].ID
		return nil
	})
	return id
}

// runFailingPull runs a pull of an image from a registry that does not
// exist (no Docker registry is needed to fail) and waits for it to end.
func runFailingPull(t *testing.T, g grpcurl, agentID string) string {
	t.Helper()
	var resp commandResponseJSON
	if err := g.call("flotilla.v1.FleetService/RunCommand", map[string]any{
		"agent_ids": []string{agentID}, "spec": map[string]any{"pull": map[string]string{"image": "127.0.0.1:9/flotilla-e2e/absent:v1"}},
		"reason": "history before the backup",
	}, &resp); err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, "the pull to end", func() error {
		var got commandResponseJSON
		if err := g.call("flotilla.v1.FleetService/GetCommand", map[string]string{"command_id": resp.Command.ID}, &got); err != nil {
			return err
		}
		if got.Command.State == "FLEET_COMMAND_STATE_RUNNING" {
			return fmt.Errorf("state %s", got.Command.State)
		}
		return nil
	})
	return resp.Command.ID
}

// runFailingRollout gives the agent a managed container (created from an
// empty image, never started), defines its service and rolls out an image
// the agent refuses to pull, so that the rollout ends, failed, without a
// registry. Without Docker it skips (fails under FLOTILLA_E2E=1).
func runFailingRollout(t *testing.T, g grpcurl) string {
	t.Helper()
	d := fixture.NewDocker(t)
	image := d.Name("restore-img") + ":v1"
	buildEmptyImage(t, d, image)
	name := d.Name("restore-app")
	d.CreateContainer(t, fixture.ContainerSpec{Name: name, Image: image, Managed: true})
	eventually(t, 20*time.Second, "the agent to report "+name, func() error {
		var list json.RawMessage
		if err := g.call("flotilla.v1.FleetService/ListAgents", map[string]any{}, &list); err != nil {
			return err
		}
		if !strings.Contains(string(list), name) {
			return fmt.Errorf("no %s in %s", name, list)
		}
		return nil
	})
	if err := g.call("flotilla.v1.RolloutService/PutService", map[string]any{"service": map[string]any{
		"name": "restore-e2e", "container": name, "selector": "env=e2e", "health_url": "http://127.0.0.1:9/health",
	}}, nil); err != nil {
		t.Fatal(err)
	}
	var resp rolloutResponseJSON
	if err := g.call("flotilla.v1.RolloutService/StartRollout", map[string]any{
		"service": "restore-e2e", "image": "127.0.0.1:9/flotilla-e2e/absent:v2", "reason": "history before the backup",
	}, &resp); err != nil {
		t.Fatal(err)
	}
	eventually(t, 90*time.Second, "the rollout to end", func() error {
		var got rolloutResponseJSON
		if err := g.call("flotilla.v1.RolloutService/GetRollout", map[string]string{"rollout_id": resp.Rollout.ID}, &got); err != nil {
			return err
		}
		switch got.Rollout.State {
		case "ROLLOUT_STATE_PREPARING", "ROLLOUT_STATE_RUNNING", "ROLLOUT_STATE_ROLLING_BACK":
			return fmt.Errorf("state %s", got.Rollout.State)
		}
		t.Logf("rollout %s ended %s: %s", got.Rollout.ID, got.Rollout.State, got.Rollout.Message)
		return nil
	})
	return resp.Rollout.ID
}

// buildEmptyImage builds an image with no layers (FROM scratch), enough to
// create a container from.
func buildEmptyImage(t *testing.T, d *fixture.Docker, ref string) {
	t.Helper()
	dockerfile := "FROM scratch\nCMD [\"/none\"]\n"
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: "Dockerfile", Mode: 0o644, Size: int64(len(dockerfile))}); err != nil {
		t.Fatal(err)
	}
	tw.Write([]byte(dockerfile))
	tw.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := d.Client.ImageBuild(ctx, &buf, client.ImageBuildOptions{
		Tags: []string{ref}, Remove: true, Labels: d.Labels(nil), Version: build.BuilderV1,
	})
	if err != nil {
		t.Fatalf("build %s: %v", ref, err)
	}
	defer res.Body.Close()
	out, _ := io.ReadAll(res.Body)
	if bytes.Contains(out, []byte(`"errorDetail"`)) {
		t.Fatalf("build %s: %s", ref, out)
	}
}

func auditEvents(t *testing.T, g grpcurl) []auditEventJSON {
	t.Helper()
	var resp listAuditJSON
	if err := g.call("flotilla.v1.AdminService/ListAuditEvents", map[string]any{"page_size": 1000}, &resp); err != nil {
		t.Fatal(err)
	}
	if len(resp.Events) == 0 {
		t.Fatal("the audit log is empty")
	}
	return resp.Events
}

func countMethod(events []auditEventJSON, method string) int {
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
func checkAgentBack(t *testing.T, g grpcurl, agentID string) {
	t.Helper()
	began := time.Now()
	eventually(t, 60*time.Second, "the agent to reconnect to the restored control plane", func() error {
		var list listAgentsJSON
		if err := g.call("flotilla.v1.FleetService/ListAgents", map[string]any{}, &list); err != nil {
			return err
		}
		if len(list.Agents) != 1 || list.Agents[0].ID != agentID || list.Agents[0].State != "AGENT_STATE_CONNECTED" {
			return fmt.Errorf("agents: %+v, want only %s connected", list.Agents, agentID)
		}
		return nil
	})
	t.Logf("agent %s reconnected %s after the restored control plane served", agentID, time.Since(began).Round(100*time.Millisecond))
}

// checkHistory checks that the command and the rollout from before the
// backup are listed by the restored control plane, in the state they
// ended in.
func checkHistory(t *testing.T, g grpcurl, commandID, rolloutID string) {
	t.Helper()
	var cmds struct {
		Commands []fleetCommandJSON `json:"commands"`
	}
	if err := g.call("flotilla.v1.FleetService/ListCommands", map[string]any{}, &cmds); err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(cmds.Commands, func(c fleetCommandJSON) bool {
		return c.ID == commandID && c.State != "FLEET_COMMAND_STATE_RUNNING" && c.Reason == "history before the backup"
	}) {
		t.Errorf("ListCommands after the restore = %s, want the ended command %s", dump(cmds), commandID)
	}
	if rolloutID == "" {
		t.Log("no rollout to look for: the rollout step was skipped (no Docker)")
		return
	}
	var rollouts listRolloutsJSON
	if err := g.call("flotilla.v1.RolloutService/ListRollouts", map[string]any{"service": "restore-e2e"}, &rollouts); err != nil {
		t.Fatal(err)
	}
	if len(rollouts.Rollouts) != 1 || rollouts.Rollouts[0].ID != rolloutID {
		t.Errorf("ListRollouts after the restore = %s, want rollout %s", dump(rollouts), rolloutID)
	}
}
