package fleet

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"flotilla.dev/e2e/internal/fixture"
	"flotilla.dev/e2e/internal/grpcurl"
)

// fleetSize is the number of hosts, as the fleet has.
const fleetSize = 5

// selector picks the fleet's agents: the join token gave them env=e2e.
const selector = "env=e2e"

// TestFleet boots the fleet from the real images and checks what an
// engineer sees with grpcurl and /metrics; then kills one agent container
// and restarts it.
func TestFleet(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end fleet on Docker; run without -short")
	}
	begin := time.Now()
	f := startFleet(t, fleetSize)

	var agents map[string]grpcurl.Agent // by hostname
	fixture.Eventually(t, 60*time.Second, "five agents connected with metrics, healthy apps and their containers", func() error {
		var err error
		agents, err = f.connected()
		return err
	})
	t.Logf("boot: %d agents connected %s after the fleet started", fleetSize, time.Since(begin).Round(100*time.Millisecond))
	checkIdentity(t, f, agents)
	fixture.Eventually(t, 10*time.Second, "/metrics to count five connected agents", func() error {
		return f.metricsShow(fmt.Sprintf(`flotilla_agents{state="connected"} %d`, fleetSize))
	})

	t.Run("agent killed and restarted", func(t *testing.T) {
		h := f.hosts[2]
		id := agents[h.name].ID
		f.e.kill(t, h.agentID)
		killed := time.Now()
		fixture.Eventually(t, agentLostAfter+15*time.Second, h.name+" to be LOST", func() error {
			return f.agentState(id, "AGENT_STATE_LOST")
		})
		t.Logf("loss detected %s after SIGKILL (agent_lost_after %s)", time.Since(killed).Round(100*time.Millisecond), agentLostAfter)
		fixture.Eventually(t, 10*time.Second, "/metrics to show the lost agent", func() error {
			return f.metricsShow(`flotilla_agents{state="lost"} 1`, fmt.Sprintf(`flotilla_agents{state="connected"} %d`, fleetSize-1))
		})

		// Its state volume kept the key, certificate and ID: no new
		// registration, the same agent comes back.
		f.e.start(t, h.agentID)
		restarted := time.Now()
		fixture.Eventually(t, 30*time.Second, h.name+" to reconnect with the same ID", func() error {
			return f.agentState(id, "AGENT_STATE_CONNECTED")
		})
		if a, err := f.g.GetAgent(id); err != nil || !a.ConnectedAt.After(killed) {
			t.Errorf("GetAgent after restart: connectedAt %v is not after the kill at %v (%v)", a.ConnectedAt, killed, err)
		}
		t.Logf("reconnected %s after restart", time.Since(restarted).Round(100*time.Millisecond))
		fixture.Eventually(t, 30*time.Second, "the whole fleet connected again, with no extra agent", func() error {
			if _, err := f.connected(); err != nil {
				return err
			}
			return f.metricsShow(fmt.Sprintf(`flotilla_agents{state="connected"} %d`, fleetSize), `flotilla_agents{state="lost"} 0`)
		})
	})
}

// connected lists the fleet's agents and returns them by hostname when
// all fleetSize are connected with metrics, a healthy application and
// their own "web" container.
func (f *fleet) connected() (map[string]grpcurl.Agent, error) {
	list, err := f.g.ListAgents(selector)
	if err != nil {
		return nil, err
	}
	if len(list) != fleetSize {
		return nil, fmt.Errorf("%d agents match %s, want %d", len(list), selector, fleetSize)
	}
	out := map[string]grpcurl.Agent{}
	for _, a := range list {
		if err := ready(a); err != nil {
			b, _ := json.Marshal(a)
			return nil, fmt.Errorf("%s: %v: %s", a.Hostname, err, b)
		}
		out[a.Hostname] = a
	}
	return out, nil
}

// ready says what an agent still lacks to count as booted.
func ready(a grpcurl.Agent) error {
	hb := a.LastHeartbeat
	switch {
	case a.State != "AGENT_STATE_CONNECTED":
		return fmt.Errorf("state %s", a.State)
	case hb.Host.CPUPercent == nil || hb.Host.MemoryPercent == 0 || len(hb.Host.Disks) == 0:
		return fmt.Errorf("no CPU, memory or disk metrics yet")
	case !hb.App.Healthy:
		return fmt.Errorf("application not healthy")
	case len(a.Containers) != 1 || a.Containers[0].Name != "web" || a.Containers[0].State != "running":
		return fmt.Errorf("containers %+v, want one running web", a.Containers)
	}
	return nil
}

// checkIdentity checks that each host registered under its own name, with
// the labels of the token and of its environment, and reports its own
// application's image.
func checkIdentity(t *testing.T, f *fleet, agents map[string]grpcurl.Agent) {
	t.Helper()
	ids := map[string]bool{}
	for _, h := range f.hosts {
		a, ok := agents[h.name]
		if !ok {
			t.Errorf("no agent reports hostname %s", h.name)
			continue
		}
		ids[a.ID] = true
		if a.Labels["env"] != "e2e" || a.Labels["role"] != "web" || a.Labels["address"] != h.app {
			t.Errorf("%s: labels %v, want env=e2e role=web address=%s", h.name, a.Labels, h.app)
		}
		if img := a.Containers[0].Image; !strings.HasPrefix(img, "flotilla-test/app:") {
			t.Errorf("%s: web runs %q, want the test application", h.name, img)
		}
	}
	if len(ids) != fleetSize {
		t.Errorf("%d distinct agent IDs, want %d", len(ids), fleetSize)
	}
}

// agentState checks one agent's state with GetAgent.
func (f *fleet) agentState(id, want string) error {
	a, err := f.g.GetAgent(id)
	if err != nil {
		return err
	}
	if a.State != want {
		return fmt.Errorf("state %s, want %s", a.State, want)
	}
	return nil
}

// metricsShow checks that /metrics has every line.
func (f *fleet) metricsShow(lines ...string) error {
	body, err := fixture.Get(f.metricsURL)
	if err != nil {
		return err
	}
	body += "\n" // Get trims the last line's newline
	for _, l := range lines {
		if !strings.Contains(body, l+"\n") {
			return fmt.Errorf("/metrics lacks %q", l)
		}
	}
	return nil
}
