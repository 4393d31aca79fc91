package e2e

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"flotilla.dev/e2e/internal/fixture"
	"flotilla.dev/e2e/internal/grpcurl"
	"flotilla.dev/e2e/internal/rollouttest"
)

// reattachWithin is how soon the agents of a dead replica must be back on
// another (issue 13).
const reattachWithin = 30 * time.Second

// testAgentsReplicaKilled SIGKILLs the replica holding the most agents
// (at least a third) and, at once, runs two commands through
// another: a restart of every application host's container on the image
// it runs (v2, after the first fault) and a pull on every host that may
// pull. Every agent must be back on a surviving
// replica within 30 s and never be reported lost; both commands must
// succeed on every host, each container re-created exactly once (Docker's
// events), whichever replica the host's stream was on when they were
// issued.
func (f *failoverEnv) testAgentsReplicaKilled(t *testing.T) {
	placed := f.ready(t)
	t.Logf("agents by replica: %s", f.describePlacement(t, placed))
	victim := f.mostAgents(placed)
	var moved []string
	for id, r := range placed {
		if r == victim {
			moved = append(moved, id)
		}
	}
	survivor := f.set.other(t, victim)
	api := f.apiOn(survivor)
	states := watchAgentStates(t, api)
	creates := rollouttest.RecordCreates(t, f)

	victim.kill(t)
	killed := time.Now()
	t.Logf("%s SIGKILLed holding %d of %d agents: %v", victim.name, len(moved), f.agentCount(), f.names(t, moved))
	// A restart with an image re-creates the container (a plain restart
	// restarts it in place): Docker's create events count the runs.
	restart := api.RunCommand(t, fmt.Sprintf(`{"selector": "env=e2e,role=web", "spec": {"restart": {"container": "web", "image": %q}}, "reason": "restart while a replica died"}`, f.images["v2"]))
	pull := api.RunCommand(t, fmt.Sprintf(`{"selector": "env=e2e,role in (web,spare)", "spec": {"pull": {"image": %q}}, "reason": "pull while a replica died"}`, f.images["v1"]))
	t.Logf("commands %s (restart) and %s (pull) issued on %s %s after the kill", restart.ID, pull.ID, survivor.name, time.Since(killed).Round(10*time.Millisecond))

	slowest := f.waitReattached(t, moved, victim, killed)
	t.Logf("every agent of %s back on another replica; the slowest %s after the kill", victim.name, slowest.Round(100*time.Millisecond))
	if slowest > reattachWithin {
		t.Errorf("the slowest agent took %s to come back, want within %s", slowest, reattachWithin)
	}
	restartEnd := waitCommandSucceeded(t, api, restart.ID, rolloutHosts)
	pullEnd := waitCommandSucceeded(t, api, pull.ID, rolloutHosts+spareAgents)
	seen := states.stop()
	got := creates.Stop(t)
	created := 0
	for _, h := range f.AppHosts() {
		created += len(got[h.Container])
		if !slices.Equal(got[h.Container], []string{f.images["v2"]}) {
			t.Errorf("%s's container was created %d times (%v) by one restart command, want once from %s", h.Name, len(got[h.Container]), got[h.Container], f.images["v2"])
		}
	}
	t.Logf("FIGURES: %d of %d agents moved, the slowest back after %s; restart ended %s and pull %s after the kill; "+
		"%d containers created for %d restarted hosts; %d duplicate deliveries absorbed by the agents' journals; agent states seen: %s",
		len(moved), f.agentCount(), slowest.Round(100*time.Millisecond), restartEnd.Sub(killed).Round(100*time.Millisecond),
		pullEnd.Sub(killed).Round(100*time.Millisecond), created, len(f.AppHosts()), f.duplicateDeliveries(), seen.describe())
	if lost := seen.lost(); len(lost) > 0 {
		t.Errorf("agents reported lost while their replica died: %v", lost)
	}
	if seen.polls == 0 {
		t.Errorf("the agents' states were never read during the fault")
	}
	f.restartIfDown(t, victim)
}

// testAgentsSpreadAgain waits until the agents are spread over the three
// replicas again after the last fault left the survivors holding them all
// (issue 13): each replica holds at least one and at most one more than
// its share. A replica past its share closes its oldest streams, none
// younger than 30 s, and their agents reconnect to their next address, so
// this takes at least 30 s after the agents moved.
func (f *failoverEnv) testAgentsSpreadAgain(t *testing.T) {
	began := time.Now()
	share := (f.agentCount() + len(f.set.replicas) - 1) / len(f.set.replicas)
	before := f.describePlacement(t, f.ready(t))
	var placed map[string]*replica
	fixture.Eventually(t, 150*time.Second, "every replica holding about its share of the agents", func() error {
		p, err := f.placement()
		if err != nil {
			return err
		}
		counts := map[*replica]int{}
		for _, r := range p {
			counts[r]++
		}
		for _, r := range f.set.replicas {
			if counts[r] == 0 || counts[r] > share+1 {
				return fmt.Errorf("%s holds %d agents, want 1 to %d", r.name, counts[r], share+1)
			}
		}
		placed = p
		return nil
	})
	rebalanced := 0.0
	for _, r := range f.set.replicas {
		rebalanced += counterOn(t, r, "flotilla_agent_streams_rebalanced_total")
	}
	t.Logf("FIGURES: agents spread again %s after the fleet was whole (%s -> %s); %.0f streams closed to rebalance",
		time.Since(began).Round(100*time.Millisecond), before, f.describePlacement(t, placed), rebalanced)
}

// counterOn reads a series without labels from r's /metrics (0 when it is
// missing or unreadable: a figure for the log, not an assertion).
func counterOn(t *testing.T, r *replica, name string) float64 {
	t.Helper()
	_, body, err := httpGet("http://" + r.metricsAddr + "/metrics")
	if err != nil {
		t.Logf("reading %s's metrics: %v", r.name, err)
		return 0
	}
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			n, _ := strconv.ParseFloat(v, 64)
			return n
		}
	}
	return 0
}

// mostAgents is the replica holding the most agents (at least a third of
// them), then the most application hosts.
func (f *failoverEnv) mostAgents(placed map[string]*replica) *replica {
	apps, all := map[*replica]int{}, map[*replica]int{}
	for _, h := range f.hosts {
		apps[placed[h.agentID]]++
	}
	for _, r := range placed {
		all[r]++
	}
	best := f.set.replicas[0]
	for _, r := range f.set.replicas[1:] {
		if all[r] > all[best] || all[r] == all[best] && apps[r] > apps[best] {
			best = r
		}
	}
	return best
}

// waitReattached waits until each of the agents has its stream on a
// running replica other than dead, connected after since, and returns how
// long the slowest took.
func (f *failoverEnv) waitReattached(t *testing.T, ids []string, dead *replica, since time.Time) time.Duration {
	t.Helper()
	back := map[string]time.Duration{}
	fixture.Eventually(t, 2*reattachWithin, "every agent of "+dead.name+" back on another replica", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		holders, err := f.set.streamHolders(ctx)
		if err != nil {
			return err
		}
		var waiting []string
		for _, id := range ids {
			if _, ok := back[id]; ok {
				continue
			}
			if r := f.set.byHolder(holders[id]); r != nil && r != dead && !r.process().Exited() {
				back[id] = time.Since(since)
				continue
			}
			waiting = append(waiting, id)
		}
		if len(waiting) > 0 {
			return fmt.Errorf("%d agents not back yet: %v", len(waiting), waiting)
		}
		return nil
	})
	var slowest time.Duration
	for _, d := range back {
		slowest = max(slowest, d)
	}
	return slowest
}

// waitCommandSucceeded waits until the fleet command ends and wants it
// succeeded on hosts hosts; it returns when it was seen ended.
func waitCommandSucceeded(t *testing.T, api grpcurl.Client, id string, hosts int) time.Time {
	t.Helper()
	var fc grpcurl.FleetCommand
	fixture.Eventually(t, 2*time.Minute, "command "+id+" to end", func() error {
		var resp grpcurl.CommandResponse
		if err := api.Call(grpcurl.FleetService+"GetCommand", map[string]string{"command_id": id}, &resp); err != nil {
			return err
		}
		if fc = resp.Command; fc.State == "FLEET_COMMAND_STATE_RUNNING" || fc.State == "" {
			return fmt.Errorf("command %s is %s: %v", id, fc.State, fc.Summary)
		}
		return nil
	})
	ended := time.Now()
	if fc.State != "FLEET_COMMAND_STATE_SUCCEEDED" || len(fc.Hosts) != hosts {
		t.Errorf("command %s ended %s on %d hosts, want SUCCEEDED on %d: %s", id, fc.State, len(fc.Hosts), hosts, grpcurl.Dump(fc))
	}
	for _, h := range fc.Hosts {
		if h.State != "COMMAND_STATE_SUCCEEDED" {
			t.Errorf("command %s on %s: %s %s", id, h.AgentID, h.State, h.Message)
		}
	}
	return ended
}

// duplicateDeliveries counts the commands the agents received again after
// running them, which their journals answered without running them again.
func (f *failoverEnv) duplicateDeliveries() int {
	n := 0
	count := func(p *fixture.Process) { n += strings.Count(p.Output(), "duplicate delivery") }
	for _, h := range f.hosts {
		count(h.proc)
	}
	count(f.lbProc)
	for _, p := range f.spares {
		count(p)
	}
	return n
}

// agentStates polls ListAgents on one replica until stopped and records
// every state other than connected that each agent was listed in.
type agentStates struct {
	stopCh chan struct{}
	done   chan struct{}

	mu    sync.Mutex
	polls int
	// seen counts, per "hostname STATE", the polls that listed it.
	seen   map[string]int
	errors int
}

// watchAgentStates starts polling api.
func watchAgentStates(t *testing.T, api grpcurl.Client) *agentStates {
	t.Helper()
	s := &agentStates{stopCh: make(chan struct{}), done: make(chan struct{}), seen: map[string]int{}}
	go func() {
		defer close(s.done)
		for {
			select {
			case <-s.stopCh:
				return
			case <-time.After(200 * time.Millisecond):
			}
			agents, err := api.ListAgents("")
			s.mu.Lock()
			if err != nil {
				s.errors++
			} else {
				s.polls++
			}
			for _, a := range agents {
				if a.State != "AGENT_STATE_CONNECTED" {
					s.seen[a.Hostname+" "+strings.TrimPrefix(a.State, "AGENT_STATE_")]++
				}
			}
			s.mu.Unlock()
		}
	}()
	t.Cleanup(func() { s.stop() })
	return s
}

// stop stops polling (the first call) and returns the states seen.
func (s *agentStates) stop() *agentStates {
	select {
	case <-s.stopCh:
	default:
		close(s.stopCh)
	}
	<-s.done
	return s
}

// lost lists the agents seen lost.
func (s *agentStates) lost() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for k := range s.seen {
		if strings.HasSuffix(k, " LOST") {
			out = append(out, strings.TrimSuffix(k, " LOST"))
		}
	}
	sort.Strings(out)
	return out
}

// describe renders the polls and the states other than connected.
func (s *agentStates) describe() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := make([]string, 0, len(s.seen))
	for k := range s.seen {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s ×%d", k, s.seen[k]))
	}
	if len(parts) == 0 {
		parts = []string{"connected only"}
	}
	return fmt.Sprintf("%d polls (%d failed): %s", s.polls, s.errors, strings.Join(parts, ", "))
}
