package fleet_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
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
	// taken holds the other leases taken (the flush progress leases),
	// by name.
	taken map[string]store.Lease
	// changes are the state changes every replica told, as
	// "<holder>: <agent> <from>-><to>".
	changes []string
}

// told returns the state changes told so far, by any replica.
func (rs *replicaSet) told() []string {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return slices.Clone(rs.changes)
}

func newReplicaSet(t *testing.T) *replicaSet {
	return &replicaSet{t: t, st: openStore(t), clk: newClock(t0), live: map[string]bool{}, taken: map[string]store.Lease{}}
}

// leases is the replica leases as the store would list them: the
// replica leases from the set's live replicas, the others as taken, until
// they expire by the set's clock.
type leases struct{ rs *replicaSet }

const (
	replicaPrefix = "replica/"
	flushedPrefix = "fleet-flushed/"
)

func (l leases) LiveLeases(_ context.Context, prefix string) ([]store.Lease, error) {
	l.rs.mu.Lock()
	defer l.rs.mu.Unlock()
	var out []store.Lease
	if prefix == replicaPrefix {
		for h, ok := range l.rs.live {
			if ok {
				out = append(out, store.Lease{Name: prefix + h, Holder: h})
			}
		}
		return out, nil
	}
	now := l.rs.clk.Now()
	for name, lease := range l.rs.taken {
		if strings.HasPrefix(name, prefix) && lease.ExpiresAt.After(now) {
			out = append(out, lease)
		}
	}
	return out, nil
}

func (l leases) AcquireLease(_ context.Context, name, holder string, ttl time.Duration) (store.Lease, error) {
	l.rs.mu.Lock()
	defer l.rs.mu.Unlock()
	lease := store.Lease{Name: name, Holder: holder, Token: 1, ExpiresAt: l.rs.clk.Now().Add(ttl)}
	l.rs.taken[name] = lease
	return lease, nil
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
	return rs.rebalancingReplica(holder, lead, fleet.Rebalance{})
}

// rebalancingReplica is replica with reb as its rebalancing settings.
func (rs *replicaSet) rebalancingReplica(holder string, lead *leadership, reb fleet.Rebalance) *fleet.Registry {
	rs.t.Helper()
	rs.setLive(holder, true)
	r, err := fleet.New(fleet.Config{
		Store: rs.st, Logger: zaptest.NewLogger(rs.t).Named(holder), Now: rs.clk.Now,
		LostAfter: lostAfter, ReconnectGrace: lostAfter, PersistInterval: time.Minute, FlushInterval: time.Second,
		Replica: fleet.Replica{Holder: holder, LeasePrefix: replicaPrefix, FlushedPrefix: flushedPrefix, Leases: leases{rs}, Leader: lead,
			Rebalance: reb},
		OnStateChange: func(c fleet.StateChange) {
			rs.mu.Lock()
			defer rs.mu.Unlock()
			rs.changes = append(rs.changes, holder+": "+c.AgentID+" "+c.From+"->"+c.To)
		},
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

// TestReplicaVouchesForUnchangedHeartbeats: the replica holding a stream
// writes a heartbeat only when it changes the application's health or the
// containers (or once per persist interval); the other replicas know the
// unchanged ones current up to the holder's flush watermark, never beyond
// it, and not once the holder is gone.
func TestReplicaVouchesForUnchangedHeartbeats(t *testing.T) {
	rs := newReplicaSet(t)
	a, b := rs.replica("a", &leadership{}), rs.replica("b", &leadership{})
	register(t, rs.st, b, "web-1", t0, nil, nil)
	s := mustAttach(t, b, "web-1", nil, "10.0.0.1:1")
	rs.clk.Advance(5 * time.Second)
	first := rs.clk.Now()
	mustHeartbeat(t, b, s, heartbeatMsg(12.5, true))
	mustFlush(t, b)
	for i := 1; i <= 3; i++ {
		rs.clk.Advance(5 * time.Second)
		mustHeartbeat(t, b, s, heartbeatMsg(12.5+float64(i), true)) // readings only: not a change
		mustFlush(t, b)
		mustRefresh(t, a)
		got := mustGet(t, a, "web-1")
		if !got.HeartbeatAt.Equal(first) || !got.CurrentAt.Equal(rs.clk.Now()) || !got.LastHeartbeat.GetApp().GetHealthy() {
			t.Fatalf("unchanged heartbeat %d: a sees heartbeat at %s current at %s (%v), want %s current at %s",
				i, got.HeartbeatAt, got.CurrentAt, got.LastHeartbeat, first, rs.clk.Now())
		}
	}
	if row := mustStored(t, rs.st, "web-1"); !row.LastSeenAt.Equal(first) {
		t.Errorf("row's last_seen_at = %s after unchanged heartbeats, want %s (the first, the only one written)", row.LastSeenAt, first)
	}

	// A change of health is written at the next flush; a heartbeat after
	// that flush is not vouched for before the flush after it.
	rs.clk.Advance(time.Second)
	flushedAt := rs.clk.Now()
	mustHeartbeat(t, b, s, heartbeatMsg(20, false))
	mustFlush(t, b)
	rs.clk.Advance(time.Second)
	mustHeartbeat(t, b, s, heartbeatMsg(20, true))
	mustRefresh(t, a)
	got := mustGet(t, a, "web-1")
	if got.LastHeartbeat.GetApp().GetHealthy() || !got.HeartbeatAt.Equal(flushedAt) || !got.CurrentAt.Equal(flushedAt) {
		t.Fatalf("after a change: a sees healthy=%v at %s current at %s, want the unhealthy heartbeat at %s, current at %s",
			got.LastHeartbeat.GetApp().GetHealthy(), got.HeartbeatAt, got.CurrentAt, flushedAt, flushedAt)
	}

	// Readings that changed nothing are written once per persist interval.
	rs.clk.Advance(time.Minute)
	mustHeartbeat(t, b, s, heartbeatMsg(77, true))
	mustFlush(t, b)
	mustRefresh(t, a)
	if got := mustGet(t, a, "web-1"); got.LastHeartbeat.GetHost().GetCpuPercent() != 77 || !got.HeartbeatAt.Equal(rs.clk.Now()) {
		t.Fatalf("after the persist interval: a sees CPU %v at %s, want 77 at %s", got.LastHeartbeat.GetHost().GetCpuPercent(), got.HeartbeatAt, rs.clk.Now())
	}

	// The holder gone, nothing is vouched for any more.
	vouched := rs.clk.Now()
	rs.setLive("b", false)
	rs.clk.Advance(5 * time.Second)
	mustRefresh(t, a)
	if got := mustGet(t, a, "web-1"); got.Record.State != store.AgentDisconnected || !got.CurrentAt.Equal(vouched) {
		t.Fatalf("holder gone: a sees %s, current at %s, want disconnected, current at %s", fmtState(got), got.CurrentAt, vouched)
	}
}

// TestAgentLostAndBackOnceAcrossReplicas: an agent whose replica died is
// told lost once, by the fleet leader, and back once, by the replica it
// returns to, even when that replica's view never saw the loss (issue 13:
// agent.back was missed when the agent came back on a replica other than
// the leader); a second return is no news.
func TestAgentLostAndBackOnceAcrossReplicas(t *testing.T) {
	rs := newReplicaSet(t)
	lead := &leadership{}
	lead.leading.Store(true)
	leader, c, dead := rs.replica("leader", lead), rs.replica("c", &leadership{}), rs.replica("dead", &leadership{})
	for _, id := range []string{"to-c", "to-leader"} {
		register(t, rs.st, dead, id, t0, nil, nil)
		mustAttach(t, dead, id, nil, "10.0.0.1:1")
	}
	mustFlush(t, dead)
	mustRefresh(t, leader)
	mustRefresh(t, c)
	mustSweepFleet(t, leader) // sees dead live
	rs.setLive("dead", false)
	rs.clk.Advance(lostAfter + 2*time.Second)
	mustSweepFleet(t, leader)

	// c has not read the loss: its view shows the agents connected to
	// dead. Both return, one to c, one to the leader.
	mustAttach(t, c, "to-c", nil, "10.0.0.1:2")
	mustAttach(t, leader, "to-leader", nil, "10.0.0.1:3")
	mustFlush(t, c)
	mustFlush(t, leader)
	for _, r := range []*fleet.Registry{leader, c} {
		mustRefresh(t, r)
		mustSweepFleet(t, r)
	}
	// to-c moves on to the leader: connected to connected, no news.
	mustAttach(t, leader, "to-c", nil, "10.0.0.1:4")
	mustFlush(t, leader)
	mustFlush(t, c)

	want := map[string]int{
		"leader: to-c ->lost": 1, "leader: to-leader ->lost": 1,
		"c: to-c lost->connected": 1, "leader: to-leader lost->connected": 1,
	}
	got := map[string]int{}
	for _, ch := range rs.told() {
		if strings.Contains(ch, "lost") {
			got[ch]++
		}
	}
	if !maps.Equal(got, want) {
		t.Errorf("losses and returns told = %v, want %v (all told: %v)", got, want, rs.told())
	}
}

// TestRebalanceGivesStreamsBack: a replica holding more than its share of
// the streams (those of the live replicas over their number) closes the
// oldest ones, at most Rate a second and none younger than MinAge, until
// it holds its share; agents of a dead replica do not count, and a replica
// alone keeps everything (issue 13: after a replica died and returned,
// every agent stayed on the survivors).
func TestRebalanceGivesStreamsBack(t *testing.T) {
	ctx := context.Background()
	rs := newReplicaSet(t)
	reb := fleet.Rebalance{Rate: 4, MinAge: time.Minute, Interval: time.Second}
	a := rs.rebalancingReplica("a", &leadership{}, reb)
	b := rs.rebalancingReplica("b", &leadership{}, reb)
	rs.setLive("b", false) // b is down while the fleet connects
	var ids []string
	sessions := map[string]*fleet.Session{}
	for i := range 10 {
		id := fmt.Sprintf("web-%02d", i)
		ids = append(ids, id)
		register(t, rs.st, a, id, t0, nil, nil)
		sessions[id] = mustAttach(t, a, id, nil, "10.0.0.1:1")
		rs.clk.Advance(time.Second) // web-00 is the oldest stream
	}
	mustFlush(t, a)
	rs.clk.Advance(time.Minute)
	if n, err := a.RebalanceOnce(ctx); err != nil || n != 0 {
		t.Fatalf("alone: RebalanceOnce = %d, %v; want 0", n, err)
	}

	// web-00's stream is replaced just before b comes back: too young to
	// move. b is back: a's share is 5 of 10; it closes 4 (the rate), the
	// oldest but web-00.
	sessions["web-00"] = mustAttach(t, a, "web-00", nil, "10.0.0.1:3")
	mustFlush(t, a)
	rs.setLive("b", true)
	mustRefresh(t, b)
	if n, err := a.RebalanceOnce(ctx); err != nil || n != 4 {
		t.Fatalf("RebalanceOnce = %d, %v; want 4 (the rate)", n, err)
	}
	var moved []string
	for _, id := range ids {
		s := sessions[id]
		select {
		case <-s.Done():
		default:
			continue
		}
		if !errors.Is(s.Err(), fleet.ErrRebalanced) {
			t.Fatalf("%s's stream closed with %v, want ErrRebalanced", id, s.Err())
		}
		a.Detach(s, "rebalanced")
		sessions[id] = mustAttach(t, b, id, nil, "10.0.0.1:2")
		moved = append(moved, id)
	}
	if !slices.Equal(moved, ids[1:5]) {
		t.Fatalf("streams closed = %v, want the four oldest but the young web-00: %v", moved, ids[1:5])
	}
	// web-01 comes back to a (its only address, say) and stays there: a
	// closed its stream moments ago. a, at 7 of 10, closes the two oldest
	// others.
	b.Detach(sessions["web-01"], "moved back")
	sessions["web-01"] = mustAttach(t, a, "web-01", nil, "10.0.0.1:1")
	mustFlush(t, a)
	mustFlush(t, b)
	mustRefresh(t, a)
	mustRefresh(t, b)
	rs.clk.Advance(time.Minute)
	if n, err := a.RebalanceOnce(ctx); err != nil || n != 2 {
		t.Fatalf("RebalanceOnce after web-01 came back = %d, %v; want 2", n, err)
	}
	for _, id := range []string{"web-00", "web-01", "web-05", "web-06", "web-07", "web-08", "web-09"} {
		closed := false
		select {
		case <-sessions[id].Done():
			closed = true
		default:
		}
		if want := id == "web-05" || id == "web-06"; closed != want {
			t.Errorf("%s: stream closed %v, want %v", id, closed, want)
		}
		if closed {
			a.Detach(sessions[id], "rebalanced")
			sessions[id] = mustAttach(t, b, id, nil, "10.0.0.1:2")
		}
	}
	mustFlush(t, a)
	mustFlush(t, b)
	mustRefresh(t, a)
	mustRefresh(t, b)
	// 5 and 5.
	rs.clk.Advance(time.Hour)
	for _, r := range []*fleet.Registry{a, b} {
		if n, err := r.RebalanceOnce(ctx); err != nil || n != 0 {
			t.Errorf("balanced: RebalanceOnce = %d, %v; want 0", n, err)
		}
	}
	if got := testutil.ToFloat64(metricOf(fleet.NewCollector(a), "flotilla_agent_streams_rebalanced_total")); got != 6 {
		t.Errorf("flotilla_agent_streams_rebalanced_total on a = %v, want 6", got)
	}
}

// TestRebalanceMovesAgainAnAgentBackFromAnotherReplica: an agent whose
// stream a replica closed to rebalance, seen on another replica since, is
// not "bounced back" when that replica dies and the agent returns: it may
// be moved again once its stream is old enough. (CI's failover test: the
// agents a survivor had sent to a returning replica all came back when
// that replica was killed again, and the survivor, remembering each of
// them, never gave any back: the restarted replica stayed empty.)
func TestRebalanceMovesAgainAnAgentBackFromAnotherReplica(t *testing.T) {
	ctx := context.Background()
	rs := newReplicaSet(t)
	reb := fleet.Rebalance{Rate: 4, MinAge: time.Minute, Interval: time.Second}
	a := rs.rebalancingReplica("a", &leadership{}, reb)
	b := rs.rebalancingReplica("b", &leadership{}, reb)
	sessions := map[string]*fleet.Session{}
	ids := []string{"web-00", "web-01", "web-02", "web-03"}
	for _, id := range ids {
		register(t, rs.st, a, id, t0, nil, nil)
		sessions[id] = mustAttach(t, a, id, nil, "10.0.0.1:1")
		rs.clk.Advance(time.Second)
	}
	mustFlush(t, a)
	mustRefresh(t, b)
	rs.clk.Advance(time.Minute)
	// a holds 4 of 4, its share 2: it closes web-00 and web-01, which go
	// to b; a sees them there.
	if n, err := a.RebalanceOnce(ctx); err != nil || n != 2 {
		t.Fatalf("RebalanceOnce = %d, %v; want 2", n, err)
	}
	for _, id := range ids[:2] {
		a.Detach(sessions[id], "rebalanced")
		sessions[id] = mustAttach(t, b, id, nil, "10.0.0.1:2")
	}
	mustFlush(t, a)
	mustFlush(t, b)
	mustRefresh(t, a)
	// b dies: its agents come back to a. web-02 and web-03's streams are
	// replaced a minute later, so only web-00 and web-01 are old enough to
	// move when b is back.
	rs.setLive("b", false)
	for _, id := range ids[:2] {
		b.Detach(sessions[id], "replica died")
		sessions[id] = mustAttach(t, a, id, nil, "10.0.0.1:1")
	}
	mustFlush(t, a)
	rs.clk.Advance(time.Minute)
	for _, id := range ids[2:] {
		sessions[id] = mustAttach(t, a, id, nil, "10.0.0.1:3")
	}
	mustFlush(t, a)
	rs.setLive("b", true)
	mustRefresh(t, b)
	if n, err := a.RebalanceOnce(ctx); err != nil || n != 2 {
		t.Fatalf("RebalanceOnce after b came back = %d, %v; want 2 (web-00 and web-01 were on b, not bounced back)", n, err)
	}
	for _, id := range ids[:2] {
		select {
		case <-sessions[id].Done():
		default:
			t.Errorf("%s's stream is open, want it closed to rebalance", id)
		}
	}
}

// metricOf is the collector of c's one series named name.
func metricOf(c prometheus.Collector, name string) prometheus.Collector {
	ch := make(chan prometheus.Metric, 1000)
	c.Collect(ch)
	close(ch)
	for m := range ch {
		if strings.Contains(m.Desc().String(), `"`+name+`"`) {
			return constCollector{m}
		}
	}
	return constCollector{}
}

// constCollector collects one metric already made.
type constCollector struct{ m prometheus.Metric }

func (c constCollector) Describe(ch chan<- *prometheus.Desc) {
	if c.m != nil {
		ch <- c.m.Desc()
	}
}

func (c constCollector) Collect(ch chan<- prometheus.Metric) {
	if c.m != nil {
		ch <- c.m
	}
}

// TestReplicaReclaimsAStreamMarkedLost: the fleet leader marks lost an
// agent whose replica it saw expired, while that replica renewed its lease
// late without noticing (no Reclaim); the replica's next refresh reads the
// loss of an agent it holds, claims the stream again, and the agent is
// connected again and told back once, instead of staying listed lost while
// connected.
func TestReplicaReclaimsAStreamMarkedLost(t *testing.T) {
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
	rs.setLive("a", true)
	if row := mustStored(t, rs.st, "web-1"); row.State != store.AgentLost {
		t.Fatalf("row after the leader's mark = %+v, want lost", row)
	}
	mustHeartbeat(t, a, s, heartbeatMsg(10, true))
	mustFlush(t, a) // conditional on a holding it: does not apply
	mustRefresh(t, a)
	mustFlush(t, a)
	if row := mustStored(t, rs.st, "web-1"); row.State != store.AgentConnected || row.StreamHolder != "a" {
		t.Fatalf("row after a's refresh and flush = %+v, want connected to a", row)
	}
	backs := 0
	for _, c := range rs.told() {
		if strings.HasSuffix(c, "web-1 lost->connected") {
			backs++
		}
	}
	if backs != 1 {
		t.Errorf("web-1 told back %d times, want once (all told: %v)", backs, rs.told())
	}
}
