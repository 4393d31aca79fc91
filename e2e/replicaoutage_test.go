package e2e

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"flotilla.dev/e2e/internal/fixture"
	"flotilla.dev/e2e/internal/grpcurl"
	"flotilla.dev/e2e/internal/rollouttest"
)

// outageAgents is the number of agents of the outage test.
const outageAgents = 3

// TestReplicasPostgresOutage stops PostgreSQL for 20 s under three
// replicas (the default lease, 10 s: every replica lease lapses during the
// outage and is taken again after it) with three agents spread over them,
// a command
// on every agent and a rollout in progress (their pulls held by a
// registry that lets them fail 8 s into the outage), and checks: every
// call to any replica during the outage answers Unavailable (or, served
// from memory, OK) before its deadline, never Internal; every /healthz
// says the database is down; no replica exits; when the database is back
// every agent is connected and never reported lost, and the command and
// the rollout end with the results the agents reported during the
// outage.
func TestReplicasPostgresOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test; run without -short")
	}
	dir := t.TempDir()
	set := startReplicas(t, dir, replicaCount, withReplicaFlags("-agent-lost-after", "5s"))
	api := set.api(set.replicas[0])
	reg := startHeldRegistry(t)
	ids, agents := startSpreadAgents(t, api, set.addrs(), dir, reg.addr)

	body := fmt.Sprintf(`{"selector": "env=e2e", "spec": {"pull": {"image": %q}}, "reason": "pull across an outage"}`, reg.addr+"/flotilla-e2e/held:v1")
	fc := set.api(set.replicas[1]).RunCommand(t, body)
	rolloutID := startIdleRollout(t, set.api(set.replicas[2]), idleRollout{name: "outage", selector: "role=web",
		image: reg.addr + "/flotilla-e2e/held:v2", reason: "rollout across an outage"})
	fixture.Eventually(t, 30*time.Second, "every pull under way, held by the registry", func() error {
		got := api.GetCommand(t, fc.ID)
		for _, h := range got.Hosts {
			if h.State != "COMMAND_STATE_RUNNING" {
				return fmt.Errorf("host %s: %s", h.AgentID, h.State)
			}
		}
		if n := reg.accepted(); len(got.Hosts) != outageAgents || n < 2 {
			return fmt.Errorf("%d hosts, %d connections to the registry", len(got.Hosts), n)
		}
		// The rollout's pre-pull runs on the web host, as its agent says.
		if !runningCommandOf(agents[0].Output(), rolloutID) {
			return fmt.Errorf("the rollout's pre-pull is not running on e2e-pg-1 yet")
		}
		return nil
	})
	var cps []controlPlane
	for _, r := range set.replicas {
		cps = append(cps, controlPlane{proc: r.process(), api: set.api(r), metricsAddr: r.metricsAddr, dataDir: r.dataDir})
	}
	states := watchAgentStates(t, api)

	before := connections(agents)
	if err := set.db.pg.Halt(); err != nil {
		t.Fatal(err)
	}
	halted := time.Now()
	t.Logf("PostgreSQL stopped under %d replicas", len(cps))
	probes := probeOutage(t, cps, rolloutID, halted, reg)
	if err := set.db.pg.Resume(); err != nil {
		t.Fatal(err)
	}
	resumed := time.Now()
	during := connections(agents)
	t.Logf("PostgreSQL started again %s after it stopped", resumed.Sub(halted).Round(100*time.Millisecond))
	probes.check(t)
	checkReplicasResumed(t, set, ids, fc.ID, rolloutID, resumed)
	seen := states.stop()
	var reconnects []string
	for i := range agents {
		reconnects = append(reconnects, fmt.Sprintf("e2e-pg-%d %d", i+1, during[i]-before[i]))
	}
	t.Logf("FIGURES: first Unavailable %s into the outage; slowest call %s; calls %v; agent streams opened during the outage: %s; agent states seen from the halt to the end: %s",
		probes.firstUnavailable.Round(10*time.Millisecond), probes.slowest.Round(10*time.Millisecond), probes.codes,
		strings.Join(reconnects, ", "), seen.describe())
	if lost := seen.lost(); len(lost) > 0 {
		t.Errorf("agents reported lost across the outage: %v", lost)
	}
	for _, cp := range cps {
		if cp.proc.Exited() {
			t.Errorf("the replica on %s exited:\n%s", cp.api.Addr, cp.proc.Output())
		}
	}
}

// startSpreadAgents enrols outageAgents agents, each given every address,
// and returns their IDs once all are connected, and their processes. The first is role=web
// and manages the default label's containers (the idle rollout's); the
// others are role=spare and manage none.
func startSpreadAgents(t *testing.T, g grpcurl.Client, addrs []string, dir, registry string) ([]string, []*fixture.Process) {
	t.Helper()
	join := g.CreateJoinToken(t, "replica outage e2e", outageAgents)
	tokenFile := filepath.Join(dir, "agent-secrets", "join.token")
	fixture.WriteFile(t, tokenFile, join.Token+"\n", 0o600)
	var procs []*fixture.Process
	for i := 1; i <= outageAgents; i++ {
		name := fmt.Sprintf("e2e-pg-%d", i)
		docker := fmt.Sprintf("docker:\n  allowed_registries: [%s]\n", registry)
		role := "web"
		if i > 1 {
			role = "spare"
			docker += fmt.Sprintf("  managed_label: flotilla.e2e-spare=%s\n", fixture.NewRunID())
		}
		cfg := rollouttest.ControlPlaneYAML(addrs, join.CACertSHA256) + fmt.Sprintf(`join_token_file: %s
state_dir: %s
hostname: %s
labels:
  role: %s
heartbeat_interval: 1s
log:
  format: console
`, tokenFile, filepath.Join(dir, name), name, role) + docker
		path := filepath.Join(dir, name+".yaml")
		fixture.WriteFile(t, path, cfg, 0o600)
		procs = append(procs, fixture.StartProcess(t, "agent "+name, fixture.Binary(t, "flotilla-agent"), nil, "-config", path))
	}
	var ids []string
	fixture.Eventually(t, 30*time.Second, "the agents to connect", func() error {
		agents, err := g.ListAgents("")
		if err != nil {
			return err
		}
		ids = nil
		for _, a := range agents {
			if a.State == "AGENT_STATE_CONNECTED" {
				ids = append(ids, a.ID)
			}
		}
		if len(ids) != outageAgents {
			return fmt.Errorf("%d of %d agents connected: %+v", len(ids), outageAgents, agents)
		}
		return nil
	})
	return ids, procs
}

// runningCommandOf reports whether an agent's output shows a command of
// the rollout running.
func runningCommandOf(out, rolloutID string) bool {
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "command running") && strings.Contains(line, `"command_id": "`+rolloutID+".") {
			return true
		}
	}
	return false
}

// connections counts the streams each agent has opened so far (its
// "connected" log lines).
func connections(agents []*fixture.Process) []int {
	var out []int
	for _, p := range agents {
		out = append(out, strings.Count(p.Output(), "\tconnected\t"))
	}
	return out
}

// checkReplicasResumed waits for the work to resume after the outage:
// every replica answers, every agent is connected, the command ended with
// each host's pull failure and the rollout with its host's, as the agents
// reported them while the database was away.
func checkReplicasResumed(t *testing.T, set *replicaSet, ids []string, commandID, rolloutID string, resumed time.Time) {
	t.Helper()
	for _, r := range set.replicas {
		api := set.api(r)
		fixture.Eventually(t, 30*time.Second, r.name+" to answer again", func() error {
			_, err := api.ListAgents("")
			return err
		})
	}
	t.Logf("every replica answered %s after PostgreSQL started again", time.Since(resumed).Round(100*time.Millisecond))
	api := set.api(set.replicas[0])
	fixture.Eventually(t, 60*time.Second, "the command to end", func() error {
		fc := api.GetCommand(t, commandID)
		if fc.State == "FLEET_COMMAND_STATE_RUNNING" || len(fc.Hosts) != len(ids) {
			return fmt.Errorf("command %s", grpcurl.Dump(fc))
		}
		for _, h := range fc.Hosts {
			if h.State != "COMMAND_STATE_FAILED" || !strings.Contains(h.Message, "held:v1") {
				return fmt.Errorf("host %s: %s %q", h.AgentID, h.State, h.Message)
			}
		}
		t.Logf("command %s ended %s %s after PostgreSQL started again", commandID, fc.State, time.Since(resumed).Round(100*time.Millisecond))
		return nil
	})
	fixture.Eventually(t, 90*time.Second, "the rollout to end", func() error {
		ro, err := api.GetRollout(rolloutID)
		if err != nil {
			return err
		}
		if !grpcurl.Ended(ro.State) || len(ro.Hosts) != 1 || !strings.Contains(ro.Hosts[0].Message, "held:v2") {
			return fmt.Errorf("rollout %s", grpcurl.Dump(ro))
		}
		t.Logf("rollout %s ended %s %s after PostgreSQL started again: %s; host: %s", rolloutID, ro.State,
			time.Since(resumed).Round(100*time.Millisecond), ro.Message, ro.Hosts[0].Message)
		return nil
	})
	fixture.Eventually(t, 30*time.Second, "every agent to be connected", func() error {
		for _, id := range ids {
			a, err := api.GetAgent(id)
			if err != nil {
				return err
			}
			if a.State != "AGENT_STATE_CONNECTED" {
				return fmt.Errorf("agent %s %s", id, a.State)
			}
		}
		return nil
	})
	t.Logf("every agent connected %s after PostgreSQL started again", time.Since(resumed).Round(100*time.Millisecond))
}
