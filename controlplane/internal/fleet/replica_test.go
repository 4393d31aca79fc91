package fleet_test

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap/zaptest"

	"flotilla.dev/controlplane/internal/fleet"
	"flotilla.dev/controlplane/internal/store"
)

// replicaSet is several replicas' registries on one store, with a fake
// list of live replicas and a fake fleet leadership.
type replicaSet struct {
	t   *testing.T
	st  store.Store
	clk *fakeClock

	mu   sync.Mutex
	live map[string]bool
}

func newReplicaSet(t *testing.T) *replicaSet {
	return &replicaSet{t: t, st: openStore(t), clk: newClock(t0), live: map[string]bool{}}
}

// leases is the replica leases as the store would list them.
type leases struct{ rs *replicaSet }

func (l leases) LiveLeases(_ context.Context, prefix string) ([]store.Lease, error) {
	l.rs.mu.Lock()
	defer l.rs.mu.Unlock()
	var out []store.Lease
	for h, ok := range l.rs.live {
		if ok {
			out = append(out, store.Lease{Name: prefix + h, Holder: h})
		}
	}
	return out, nil
}

// leadership is a fake fleet lease.
type leadership struct{ leading atomic.Bool }

func (l *leadership) Leading() bool { return l.leading.Load() }

// setLive marks a replica live or dead.
func (rs *replicaSet) setLive(holder string, live bool) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	rs.live[holder] = live
}

// replica builds and loads the registry of replica holder, live.
func (rs *replicaSet) replica(holder string, lead *leadership) *fleet.Registry {
	rs.t.Helper()
	rs.setLive(holder, true)
	r, err := fleet.New(fleet.Config{
		Store: rs.st, Logger: zaptest.NewLogger(rs.t).Named(holder), Now: rs.clk.Now,
		LostAfter: lostAfter, ReconnectGrace: lostAfter, PersistInterval: time.Minute, FlushInterval: time.Second,
		Replica: fleet.Replica{Holder: holder, LeasePrefix: "replica/", Leases: leases{rs}, Leader: lead},
	})
	if err != nil {
		rs.t.Fatalf("fleet.New: %v", err)
	}
	if err := r.Load(context.Background()); err != nil {
		rs.t.Fatalf("Load: %v", err)
	}
	return r
}

func mustRefresh(t *testing.T, r *fleet.Registry) {
	t.Helper()
	if err := r.Refresh(context.Background()); err != nil {
		t.Fatalf("Refresh: %v", err)
	}
}

func mustSweepFleet(t *testing.T, r *fleet.Registry) {
	t.Helper()
	if err := r.SweepFleet(context.Background()); err != nil {
		t.Fatalf("SweepFleet: %v", err)
	}
}

// TestReplicasShareAgents: an agent registered on one replica and attached
// to another is listed by both; an attach claims the stored row, a late
// detach of the replica that lost the stream writes nothing, and the view
// of every replica follows the holder's writes.
func TestReplicasShareAgents(t *testing.T) {
	rs := newReplicaSet(t)
	a, b := rs.replica("a", &leadership{}), rs.replica("b", &leadership{})
	register(t, rs.st, a, "web-1", t0, nil, nil)
	mustRefresh(t, b)
	if got := mustGet(t, b, "web-1"); got.Record.State != store.AgentDisconnected {
		t.Fatalf("b's view of an agent registered on a = %s, want disconnected", fmtState(got))
	}

	onA := mustAttach(t, a, "web-1", nil, "10.0.0.1:1")
	mustFlush(t, a)
	if row := mustStored(t, rs.st, "web-1"); row.StreamHolder != "a" || row.State != store.AgentConnected {
		t.Fatalf("row after a's attach: holder %q state %q, want a, connected", row.StreamHolder, row.State)
	}
	mustRefresh(t, b)
	if got := mustGet(t, b, "web-1"); got.Record.State != store.AgentConnected {
		t.Fatalf("b's view after a's attach = %s, want connected", fmtState(got))
	}

	// The agent moves to b before a notices its stream is gone.
	rs.clk.Advance(time.Second)
	mustAttach(t, b, "web-1", nil, "10.0.0.1:2")
	mustFlush(t, b)
	a.Detach(onA, "stream ended: EOF")
	mustFlush(t, a)
	if row := mustStored(t, rs.st, "web-1"); row.StreamHolder != "b" || row.State != store.AgentConnected || row.PeerAddress != "10.0.0.1:2" {
		t.Fatalf("row after a's late detach: %+v, want b's attachment untouched", row)
	}
	mustRefresh(t, a)
	if got := mustGet(t, a, "web-1"); got.Record.State != store.AgentConnected || got.Record.PeerAddress != "10.0.0.1:2" {
		t.Fatalf("a's view after its late detach = %s from %s, want b's connection", fmtState(got), got.Record.PeerAddress)
	}
}

// TestReplicaSweepLeavesOthersAgents: a replica's own sweep never marks an
// agent it does not hold lost, however old its stored heartbeat.
func TestReplicaSweepLeavesOthersAgents(t *testing.T) {
	rs := newReplicaSet(t)
	a, b := rs.replica("a", &leadership{}), rs.replica("b", &leadership{})
	register(t, rs.st, b, "web-1", t0, nil, nil)
	mustAttach(t, b, "web-1", nil, "10.0.0.1:1")
	mustFlush(t, b)
	mustRefresh(t, a)
	rs.clk.Advance(10 * lostAfter)
	a.Sweep()
	mustFlush(t, a)
	if got := mustGet(t, a, "web-1"); got.Record.State != store.AgentConnected {
		t.Errorf("a's view after its sweep = %s, want connected (b holds it)", fmtState(got))
	}
	if row := mustStored(t, rs.st, "web-1"); row.State != store.AgentConnected || row.StreamHolder != "b" {
		t.Errorf("row after a's sweep = %+v, want b's, untouched", row)
	}
}

// TestFleetLeaderMarksLost: the leader marks lost, once, the agent whose
// replica died, LostAfter (plus a flush interval) after it last saw that
// replica live, but not an agent that reconnected elsewhere meanwhile, even
// when its own view had not caught up (compare-and-set); a replica that
// does not lead marks nothing.
func TestFleetLeaderMarksLost(t *testing.T) {
	rs := newReplicaSet(t)
	lead, follow := &leadership{}, &leadership{}
	lead.leading.Store(true)
	leader, c, dead := rs.replica("leader", lead), rs.replica("c", follow), rs.replica("dead", &leadership{})
	for _, id := range []string{"gone", "moved"} {
		register(t, rs.st, dead, id, t0, nil, nil)
		mustAttach(t, dead, id, nil, "10.0.0.1:1")
	}
	mustFlush(t, dead)
	mustRefresh(t, leader)
	mustRefresh(t, c)
	mustSweepFleet(t, leader) // sees dead live
	mustSweepFleet(t, c)
	rs.setLive("dead", false)

	rs.clk.Advance(lostAfter) // not yet LostAfter plus a flush interval
	mustSweepFleet(t, leader)
	if got := mustGet(t, leader, "gone"); got.Record.State != store.AgentConnected {
		t.Fatalf("after %s: gone = %s, want not lost yet", lostAfter, fmtState(got))
	}
	// "moved" reconnects to c; the leader's view has not refreshed.
	mustAttach(t, c, "moved", nil, "10.0.0.1:3")
	mustFlush(t, c)
	rs.clk.Advance(2 * time.Second)
	mustSweepFleet(t, c) // c does not lead: nothing
	if row := mustStored(t, rs.st, "gone"); row.State == store.AgentLost {
		t.Fatal("a replica that does not lead marked an agent lost")
	}
	mustSweepFleet(t, leader)
	if got := mustGet(t, leader, "gone"); got.Record.State != store.AgentLost || !strings.Contains(got.Record.StateReason, "dead") {
		t.Fatalf("gone = %s (%s), want lost, naming the dead replica", fmtState(got), got.Record.StateReason)
	}
	lostRow := mustStored(t, rs.st, "gone")
	if row := mustStored(t, rs.st, "moved"); row.State != store.AgentConnected || row.StreamHolder != "c" {
		t.Fatalf("moved = %+v, want connected to c", row)
	}
	mustRefresh(t, leader)
	if got := mustGet(t, leader, "moved"); got.Record.State != store.AgentConnected {
		t.Errorf("leader's view of moved = %s, want connected", fmtState(got))
	}
	rs.clk.Advance(time.Minute)
	mustSweepFleet(t, leader)
	if row := mustStored(t, rs.st, "gone"); row.StatusSeq != lostRow.StatusSeq {
		t.Errorf("gone was written again after it was lost: %+v", row)
	}
}

// TestCollectorOnlyWhileLeading: a replica that does not lead exports no
// fleet-level series, and its leader gauge says 0.
func TestCollectorOnlyWhileLeading(t *testing.T) {
	rs := newReplicaSet(t)
	lead := &leadership{}
	r := rs.replica("a", lead)
	register(t, rs.st, r, "web-1", t0, nil, nil)
	c := fleet.NewCollector(r)
	want := helpLeader + "\nflotilla_controlplane_fleet_leader 0\n"
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "flotilla_agents", "flotilla_agent_up", "flotilla_controlplane_fleet_leader"); err != nil {
		t.Errorf("not leading: %v", err)
	}
	lead.leading.Store(true)
	want = helpAgents + `
flotilla_agents{state="connected"} 0
flotilla_agents{state="disconnected"} 1
flotilla_agents{state="lost"} 0
` + helpLeader + "\nflotilla_controlplane_fleet_leader 1\n"
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "flotilla_agents", "flotilla_controlplane_fleet_leader"); err != nil {
		t.Errorf("leading: %v", err)
	}
}

// TestReplicaKnowsAgentsRegisteredElsewhere: an agent registered on
// another replica since the last refresh is known at once (read from the
// store), so that its first stream is accepted; a deregistered one is not.
func TestReplicaKnowsAgentsRegisteredElsewhere(t *testing.T) {
	rs := newReplicaSet(t)
	b := rs.replica("b", &leadership{})
	register(t, rs.st, nil, "web-1", t0, nil, nil)
	register(t, rs.st, nil, "web-2", t0, nil, nil)
	if _, err := rs.st.DeregisterAgent(context.Background(), "web-2", t0, "retired"); err != nil {
		t.Fatal(err)
	}
	if !b.Known("web-1") {
		t.Fatal("Known(web-1) = false, want the agent registered elsewhere read from the store")
	}
	if got := mustGet(t, b, "web-1"); got.Record.State != store.AgentDisconnected {
		t.Errorf("web-1 after Known = %s, want disconnected", fmtState(got))
	}
	mustAttach(t, b, "web-1", nil, "10.0.0.1:1")
	if b.Known("web-2") || b.Known("nobody") {
		t.Error("Known reports a deregistered or unknown agent")
	}
	one := newRegistry(t, rs.st, rs.clk)
	register(t, rs.st, nil, "web-3", t0, nil, nil)
	if one.Known("web-3") {
		t.Error("one process: Known(web-3) = true for an agent added to the store behind its back, want only what it holds")
	}
}

// TestReplicaSeesEveryHeartbeat: a heartbeat received by the replica
// holding the stream, even one that changes nothing, reaches the other
// replicas' view at the next flush and refresh, so that their health
// gates and liveness see the agent alive.
func TestReplicaSeesEveryHeartbeat(t *testing.T) {
	rs := newReplicaSet(t)
	a, b := rs.replica("a", &leadership{}), rs.replica("b", &leadership{})
	register(t, rs.st, b, "web-1", t0, nil, nil)
	s := mustAttach(t, b, "web-1", nil, "10.0.0.1:1")
	for i := 1; i <= 3; i++ {
		rs.clk.Advance(5 * time.Second)
		mustHeartbeat(t, b, s, heartbeatMsg(12.5, true)) // the same readings every time
		mustFlush(t, b)
		mustRefresh(t, a)
		got := mustGet(t, a, "web-1")
		if !got.HeartbeatAt.Equal(rs.clk.Now()) || got.LastHeartbeat.GetHost().GetCpuPercent() != 12.5 {
			t.Fatalf("heartbeat %d: a sees heartbeat at %s (%v), want %s", i, got.HeartbeatAt, got.LastHeartbeat, rs.clk.Now())
		}
	}
}

// TestReplicaReclaimsAfterLapse: a replica cut off from the store for
// longer than its lease is counted dead and its agent marked lost by the
// leader; when it has its lease again it claims the stream it kept, and the
// agent is connected to it again everywhere.
func TestReplicaReclaimsAfterLapse(t *testing.T) {
	rs := newReplicaSet(t)
	lead := &leadership{}
	lead.leading.Store(true)
	leader, a := rs.replica("leader", lead), rs.replica("a", &leadership{})
	register(t, rs.st, a, "web-1", t0, nil, nil)
	s := mustAttach(t, a, "web-1", nil, "10.0.0.1:1")
	mustFlush(t, a)
	mustRefresh(t, leader)
	mustSweepFleet(t, leader)
	rs.setLive("a", false)
	rs.clk.Advance(lostAfter + 2*time.Second)
	mustSweepFleet(t, leader)
	if row := mustStored(t, rs.st, "web-1"); row.State != store.AgentLost || row.StreamHolder != "" {
		t.Fatalf("row while a was cut off = %+v, want lost, no holder", row)
	}
	// a is back; a conditional write of its own no longer applies.
	rs.setLive("a", true)
	mustHeartbeat(t, a, s, heartbeatMsg(10, true))
	mustFlush(t, a)
	if row := mustStored(t, rs.st, "web-1"); row.State != store.AgentLost {
		t.Fatalf("row after a's heartbeat, before it reclaimed = %+v, want still lost", row)
	}
	a.Reclaim()
	mustFlush(t, a)
	if row := mustStored(t, rs.st, "web-1"); row.State != store.AgentConnected || row.StreamHolder != "a" {
		t.Fatalf("row after a reclaimed = %+v, want connected, held by a", row)
	}
	mustRefresh(t, leader)
	if got := mustGet(t, leader, "web-1"); got.Record.State != store.AgentConnected {
		t.Errorf("leader's view after a reclaimed = %s, want connected", fmtState(got))
	}
}

// TestContainerSeriesOnlyWhileLeading: the containers of an agent
// connected to a replica that does not lead the fleet are exported by the
// leader only, like the agent's own series.
func TestContainerSeriesOnlyWhileLeading(t *testing.T) {
	rs := newReplicaSet(t)
	lead := &leadership{}
	r := rs.replica("a", lead)
	register(t, rs.st, r, "web-1", t0, nil, nil)
	s := mustAttach(t, r, "web-1", nil, "10.0.0.1:1")
	defer r.Detach(s, reasonEOF)
	mustHeartbeat(t, r, s, containerHeartbeat())
	c := fleet.NewCollector(r)
	if n := testutil.CollectAndCount(c, containerSeries...); n != 0 {
		t.Errorf("not leading: %d container series, want 0", n)
	}
	lead.leading.Store(true)
	if n := testutil.CollectAndCount(c, containerSeries...); n != 10 {
		t.Errorf("leading: %d container series, want 10 (7 of the running container, 3 of the stopped one without a limit)", n)
	}
}
