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

// pgLeaseTTL is the replica lease of the control planes in the replica
// test.
const pgLeaseTTL = 4 * time.Second

// TestPostgresReplicasBothServe runs two control planes on one PostgreSQL
// database, each with a data directory of its own holding the same CA and
// admin token (its own server certificate): both serve at once, the
// deprecated store.lease_wait is accepted and changes nothing, and when the
// first is killed the agent, which reaches them through one address (a
// forwarder, as a load balancer), reconnects to the second under its own
// ID and the command run before is listed there.
func TestPostgresReplicasBothServe(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test; run without -short")
	}
	dir := t.TempDir()
	db := startStoreDB(t, dir)
	first := startControlPlane(t, filepath.Join(dir, "host-1"), withName("controlplane-1"),
		db.flags("-store-lease-ttl", pgLeaseTTL.String()), lostAfter5s)
	secondAddr := fixture.FreeAddr(t)
	lb := startForwarder(t, first.api.Addr, secondAddr)
	agentID := startAgentVia(t, first.api, lb.addr, dir)
	commandID := runFailingPull(t, first.api, agentID)

	secondDir := filepath.Join(dir, "host-2", "cp")
	copyCredentials(t, first.dataDir, secondDir)
	second := startControlPlane(t, filepath.Join(dir, "host-2"), withName("controlplane-2"), withDataDir(secondDir),
		withAddr(secondAddr), db.flags("-store-lease-ttl", pgLeaseTTL.String(), "-store-lease-wait=false"), lostAfter5s)
	if cert := readOrEmpty(filepath.Join(secondDir, "server.crt")); cert == "" || cert == readOrEmpty(filepath.Join(first.dataDir, "server.crt")) {
		t.Error("the second replica serves the first one's server certificate, want one of its own")
	}
	// The second lists the agent the first holds, connected.
	fixture.Eventually(t, 15*time.Second, "the second replica to list the agent connected", func() error {
		agents, err := second.api.ListAgents("")
		if err != nil {
			return err
		}
		if len(agents) != 1 || agents[0].ID != agentID || agents[0].State != "AGENT_STATE_CONNECTED" {
			return fmt.Errorf("agents: %+v", agents)
		}
		return nil
	})
	// Both serve, several renewals of their leases long.
	time.Sleep(2 * pgLeaseTTL)
	for _, cp := range []controlPlane{first, second} {
		if cp.proc.Exited() {
			t.Fatalf("a replica exited while the other was alive:\n%s", cp.proc.Output())
		}
		if code, _, err := httpGet("http://" + cp.metricsAddr + "/healthz"); err != nil || code != 200 {
			t.Fatalf("/healthz of the replica on %s: %d %v, want 200", cp.api.Addr, code, err)
		}
		if _, err := cp.api.ListAgents(""); err != nil {
			t.Fatalf("ListAgents on the replica on %s: %v", cp.api.Addr, err)
		}
	}

	first.proc.Signal(syscall.SIGKILL)
	first.proc.Wait(t, 5*time.Second)
	checkAgentBack(t, second.api, agentID)
	var cmds grpcurl.ListCommandsResponse
	if err := second.api.Call(grpcurl.FleetService+"ListCommands", map[string]any{}, &cmds); err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(cmds.Commands, func(c grpcurl.FleetCommand) bool {
		return c.ID == commandID && c.State == "FLEET_COMMAND_STATE_FAILED"
	}) {
		t.Errorf("ListCommands on the second replica = %s, want the ended command %s", grpcurl.Dump(cmds), commandID)
	}
	if out := second.proc.Output(); !strings.Contains(out, "joined the control plane's replicas") {
		t.Errorf("the second replica did not log joining the replicas:\n%s", out)
	}
	// It reconnected well within agent_lost_after: never reported lost.
	if out := second.proc.Output(); strings.Contains(out, "agent lost") || strings.Contains(out, `"to": "lost"`) {
		t.Errorf("the agent was reported lost while it moved to the second replica:\n%s", out)
	}
}

// readOrEmpty is the content of path, or "" when it cannot be read.
func readOrEmpty(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

// copyCredentials copies the regular files of a control plane's data
// directory (CA, admin token) into a new one, as an operator provisions a
// second host with the same CA; the server certificate and key stay: the
// new host gets one of its own, issued by the CA at its first start.
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
		if !e.Type().IsRegular() || strings.HasPrefix(e.Name(), "server.") {
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
