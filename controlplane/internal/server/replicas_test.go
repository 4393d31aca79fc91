package server_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/types/known/timestamppb"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/controlplane/internal/config"
	"flotilla.dev/controlplane/internal/server"
	"flotilla.dev/controlplane/internal/server/servertest"
	"flotilla.dev/controlplane/internal/store"
)

// lossLog records every write, by any replica, that makes an agent lost.
type lossLog struct {
	mu     sync.Mutex
	byID   map[string]int
	leader map[string]int // marked by the fleet leader (MarkAgentsLost)
}

func (l *lossLog) add(id string, byLeader bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.byID[id]++
	if byLeader {
		l.leader[id]++
	}
}

func (l *lossLog) count(id string) (all, byLeader int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.byID[id], l.leader[id]
}

// lossRecordingStore records the losses its replica writes.
type lossRecordingStore struct {
	store.Store
	log *lossLog
}

func (s *lossRecordingStore) MarkAgentsLost(ctx context.Context, losses []store.AgentLoss, now time.Time) ([]string, error) {
	marked, err := s.Store.MarkAgentsLost(ctx, losses, now)
	for _, id := range marked {
		s.log.add(id, true)
	}
	return marked, err
}

func (s *lossRecordingStore) UpdateAgentStatuses(ctx context.Context, updates []store.AgentStatus) ([]string, error) {
	back, err := s.Store.UpdateAgentStatuses(ctx, updates)
	if err == nil {
		for _, u := range updates {
			if u.State == store.AgentLost {
				s.log.add(u.ID, false)
			}
		}
	}
	return back, err
}

// keepBeating sends every agent of agents a heartbeat every interval while
// it is connected, until the test ends, as a real agent does.
func keepBeating(t *testing.T, agents []*scriptedAgent, interval time.Duration) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			for _, a := range agents {
				a.beatQuietly()
			}
		}
	}()
}

// beatQuietly sends a heartbeat on the current stream, if any; an error
// (the stream ending) is the receive loop's to report.
func (a *scriptedAgent) beatQuietly() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cur == nil || a.gone {
		return
	}
	at := timestamppb.New(time.Unix(1_700_000_000, a.seq.Add(1)))
	_ = a.cur.stream.Send(&flotillav1.ConnectRequest{Body: &flotillav1.ConnectRequest_Heartbeat{Heartbeat: &flotillav1.Heartbeat{
		ObservedAt: at, Host: &flotillav1.HostMetrics{CpuPercent: 10, MemoryPercent: 20},
	}}})
}

// fleetStates lists the agents as one replica's API shows them.
func (h *harness) fleetStates() map[string]flotillav1.AgentState {
	h.t.Helper()
	resp, err := h.fleet().ListAgents(h.operatorCtx(h.admin), &flotillav1.ListAgentsRequest{PageSize: 1000})
	if err != nil {
		h.t.Fatalf("ListAgents: %v", err)
	}
	out := make(map[string]flotillav1.AgentState, len(resp.GetAgents()))
	for _, a := range resp.GetAgents() {
		out[a.GetId()] = a.GetState()
	}
	return out
}

// everyReplicaShows waits until every replica of hs lists exactly want.
func everyReplicaShows(t *testing.T, hs []*harness, what string, want map[string]flotillav1.AgentState) {
	t.Helper()
	var last string
	deadline := time.Now().Add(30 * time.Second)
	for {
		last = ""
		for i, h := range hs {
			got := h.fleetStates()
			for id, st := range want {
				if got[id] != st || len(got) != len(want) {
					last += fmt.Sprintf("replica %d lists %v; ", i, got)
					break
				}
			}
		}
		if last == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: %s want %v", what, last, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// fleetGauges sums flotilla_agents by state, and the leader gauge, over
// the replicas' /metrics registries.
func fleetGauges(t *testing.T, hs []*harness) (byState map[string]float64, leaders float64) {
	t.Helper()
	byState = map[string]float64{}
	for _, h := range hs {
		families, err := h.srv.Metrics().Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range families {
			switch f.GetName() {
			case "flotilla_agents":
				for _, m := range f.GetMetric() {
					byState[labelValue(m, "state")] += m.GetGauge().GetValue()
				}
			case "flotilla_controlplane_fleet_leader":
				leaders += f.GetMetric()[0].GetGauge().GetValue()
			}
		}
	}
	return byState, leaders
}

// gaugeOf is the value of an unlabelled gauge on one replica.
func gaugeOf(t *testing.T, h *harness, name string) float64 {
	t.Helper()
	families, err := h.srv.Metrics().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == name {
			return f.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no %s", name)
	return 0
}

func labelValue(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// wantGauges waits until the replicas' fleet series sum to want, from one
// leader.
func wantGauges(t *testing.T, hs []*harness, want map[string]float64) {
	t.Helper()
	eventually(t, 30*time.Second, fmt.Sprintf("flotilla_agents summed over the replicas to be %v from one leader", want), func() bool {
		got, leaders := fleetGauges(t, hs)
		if leaders != 1 {
			return false
		}
		for state, n := range want {
			if got[state] != n {
				return false
			}
		}
		return true
	})
}

// TestReplicasShareTheFleet runs three replicas on one PostgreSQL
// database. Agents connected to different replicas are listed, connected,
// by every replica, and the fleet series summed over the replicas count
// each agent once. When one replica stops, its agent that reconnects to
// another is never marked lost, and its agent that does not come back is
// marked lost once, by the fleet leader, and listed so everywhere.
func TestReplicasShareTheFleet(t *testing.T) {
	losses := &lossLog{byID: map[string]int{}, leader: map[string]int{}}
	r := servertest.StartReplicas(t, 3,
		servertest.WithConfig(func(c *config.Config) {
			c.AgentLostAfter = config.Duration(4 * time.Second)
			c.AgentReconnectGrace = config.Duration(4 * time.Second)
			c.Store.LeaseTTL = config.Duration(3 * time.Second)
		}),
		servertest.WithIntervals(server.Intervals{StatusFlush: 100 * time.Millisecond, FleetRefresh: 100 * time.Millisecond}),
		servertest.WithServerOptions(server.WithStoreWrapper(func(st store.Store) store.Store {
			return &lossRecordingStore{Store: st, log: losses}
		})),
	)
	hs := make([]*harness, len(r.All))
	for i, cp := range r.All {
		hs[i] = harnessOf(t, cp)
	}
	// Two agents per replica, each registered through the replica it
	// connects to.
	token := hs[0].joinToken(&flotillav1.CreateJoinTokenRequest{MaxUses: 6})
	agents := make([]*scriptedAgent, 6)
	want := map[string]flotillav1.AgentState{}
	for i := range agents {
		h := hs[i%3]
		agents[i] = h.newScriptedAgent(token, fmt.Sprintf("web-%d", i), map[string]string{"role": "web"})
		agents[i].connect(h)
		want[agents[i].id] = flotillav1.AgentState_AGENT_STATE_CONNECTED
	}
	keepBeating(t, agents, 500*time.Millisecond)
	everyReplicaShows(t, hs, "every replica to list the six agents connected", want)
	wantGauges(t, hs, map[string]float64{store.AgentConnected: 6, store.AgentDisconnected: 0, store.AgentLost: 0})
	// Streams are each replica's own.
	for i, h := range hs {
		if n := gaugeOf(t, h, "flotilla_agent_streams"); n != 2 {
			t.Errorf("replica %d: flotilla_agent_streams = %v, want its own 2", i, n)
		}
	}

	// Replica 0 stops (it started first, so it most likely leads the
	// fleet: its successor takes over the lost marking). Its agent 0
	// reconnects to replica 1; its agent 3 is gone with it.
	moved, gone := agents[0], agents[3]
	r.All[0].Stop()
	live := hs[1:]
	moved.reconnect(live[0])
	gone.mu.Lock()
	gone.gone = true
	gone.mu.Unlock()
	gone.drop()
	want[gone.id] = flotillav1.AgentState_AGENT_STATE_LOST
	everyReplicaShows(t, live, "the surviving replicas to list the moved agent connected and the gone one lost", want)
	wantGauges(t, live, map[string]float64{store.AgentConnected: 5, store.AgentDisconnected: 0, store.AgentLost: 1})
	if all, byLeader := losses.count(gone.id); all != 1 || byLeader != 1 {
		t.Errorf("the gone agent was marked lost %d times (%d by the fleet leader), want once, by the leader", all, byLeader)
	}
	if all, _ := losses.count(moved.id); all != 0 {
		t.Errorf("the agent that reconnected to another replica was marked lost %d times, want never", all)
	}
	for _, a := range agents {
		if a != gone && a != moved {
			if all, _ := losses.count(a.id); all != 0 {
				t.Errorf("agent %s, connected throughout, was marked lost %d times", a.id, all)
			}
		}
	}
}
