package storetest

import (
	"context"
	"slices"
	"testing"
	"time"

	"flotilla.dev/controlplane/internal/store"
)

// seqs returns the IDs and status sequences of agents, in order.
func seqs(agents []store.Agent) (ids []string, out []int64) {
	for _, a := range agents {
		ids, out = append(ids, a.ID), append(out, a.StatusSeq)
	}
	return ids, out
}

// mustListChanged lists the agents changed after seq.
func mustListChanged(t *testing.T, s store.Store, after int64, limit int) []store.Agent {
	t.Helper()
	got, err := s.ListAgentsChanged(context.Background(), after, limit)
	if err != nil {
		t.Fatalf("ListAgentsChanged(%d, %d): %v", after, limit, err)
	}
	return got
}

// mustUpdate writes status updates.
func mustUpdate(t *testing.T, s store.Store, updates ...store.AgentStatus) {
	t.Helper()
	if _, err := s.UpdateAgentStatuses(context.Background(), updates); err != nil {
		t.Fatalf("UpdateAgentStatuses: %v", err)
	}
}

// testAgentStatusSeq: registration, status writes, certificate renewals
// and deregistration each take a new status_seq above every earlier one,
// and ListAgentsChanged returns the rows after a value in that order,
// deregistered ones included, at most limit.
func testAgentStatusSeq(t *testing.T, open Opener) {
	s := open(t)
	ctx := context.Background()
	a := mustRegisterAgent(t, s, store.Agent{ID: "a", Hostname: "a"})
	b := mustRegisterAgent(t, s, store.Agent{ID: "b", Hostname: "b"})
	c := mustRegisterAgent(t, s, store.Agent{ID: "c", Hostname: "c"})
	if !(0 < a.StatusSeq && a.StatusSeq < b.StatusSeq && b.StatusSeq < c.StatusSeq) {
		t.Fatalf("status_seq after registration a=%d b=%d c=%d, want positive and increasing", a.StatusSeq, b.StatusSeq, c.StatusSeq)
	}
	if ids, _ := seqs(mustListChanged(t, s, 0, 10)); !slices.Equal(ids, []string{"a", "b", "c"}) {
		t.Fatalf("ListAgentsChanged(0) = %v, want a, b, c", ids)
	}
	mustUpdate(t, s, store.AgentStatus{ID: "a", State: store.AgentConnected, LastSeenAt: t0})
	if err := s.UpdateAgentCertificate(ctx, "b", "0b", t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DeregisterAgent(ctx, "c", t0, "retired"); err != nil {
		t.Fatal(err)
	}
	got := mustListChanged(t, s, c.StatusSeq, 10)
	ids, after := seqs(got)
	if !slices.Equal(ids, []string{"a", "b", "c"}) || !slices.IsSorted(after) || after[0] <= c.StatusSeq {
		t.Fatalf("ListAgentsChanged(%d) = %v %v, want a, b, c, each above %d, in order", c.StatusSeq, ids, after, c.StatusSeq)
	}
	if got[0].State != store.AgentConnected || got[1].CertSerial != "0b" || got[2].DeregisteredAt.IsZero() {
		t.Errorf("changed rows = %+v, want the writes in them", got)
	}
	if ids, _ := seqs(mustListChanged(t, s, after[0], 1)); !slices.Equal(ids, []string{"b"}) {
		t.Errorf("ListAgentsChanged(%d, 1) = %v, want b only", after[0], ids)
	}
	if rest := mustListChanged(t, s, after[2], 10); len(rest) != 0 {
		t.Errorf("ListAgentsChanged after the last = %v, want nothing", rest)
	}
	if _, err := s.ListAgentsChanged(ctx, 0, 0); err == nil {
		t.Error("ListAgentsChanged with limit 0: nil error, want one naming the limit")
	}
	// A conditional update that does not apply writes nothing: no new seq.
	mustUpdate(t, s, store.AgentStatus{ID: "a", State: store.AgentLost, IfHolder: "someone"})
	if rest := mustListChanged(t, s, after[2], 10); len(rest) != 0 {
		t.Errorf("a skipped conditional update took a status_seq: %v", rest)
	}
}

// testUpdateAgentStatusesIfHolder: an unconditional write sets the stream
// holder; a write conditional on another holder is skipped; one on the
// stored holder applies (a detach), and so do, in one call, an attach
// and a write conditional on the holder it wrote.
func testUpdateAgentStatusesIfHolder(t *testing.T, open Opener) {
	s := open(t)
	mustRegisterAgent(t, s, store.Agent{ID: "a", Hostname: "a"})
	attach := store.AgentStatus{ID: "a", State: store.AgentConnected, StateReason: "attached to r1", StreamHolder: "r1"}
	mustUpdate(t, s, attach)
	got := mustGetAgent(t, s, "a")
	if got.StreamHolder != "r1" || got.State != store.AgentConnected {
		t.Fatalf("after r1's attach: holder %q state %q, want r1, connected", got.StreamHolder, got.State)
	}
	mustUpdate(t, s, store.AgentStatus{ID: "a", State: store.AgentDisconnected, StateReason: "r2 detached", IfHolder: "r2"})
	if again := mustGetAgent(t, s, "a"); again.StreamHolder != "r1" || again.StateReason != "attached to r1" || again.StatusSeq != got.StatusSeq {
		t.Fatalf("after r2's detach: %+v, want r1's row untouched", again)
	}
	mustUpdate(t, s, store.AgentStatus{ID: "a", State: store.AgentDisconnected, StateReason: "r1 detached", IfHolder: "r1"})
	if again := mustGetAgent(t, s, "a"); again.StreamHolder != "" || again.StateReason != "r1 detached" {
		t.Fatalf("after r1's detach: holder %q reason %q, want none, r1 detached", again.StreamHolder, again.StateReason)
	}
	mustUpdate(t, s,
		store.AgentStatus{ID: "a", State: store.AgentConnected, StateReason: "attached to r2", StreamHolder: "r2"},
		store.AgentStatus{ID: "a", State: store.AgentConnected, StateReason: "r2 heartbeat", StreamHolder: "r2", IfHolder: "r2",
			LastHeartbeat: []byte("beat")})
	if again := mustGetAgent(t, s, "a"); again.StreamHolder != "r2" || again.StateReason != "r2 heartbeat" || string(again.LastHeartbeat) != "beat" {
		t.Fatalf("after r2's attach and heartbeat in one call: %+v, want both applied", again)
	}
}

// testMarkAgentsLost: only rows whose status_seq is still the one given,
// not lost already and not deregistered, are marked; the mark clears the
// holder and takes a new status_seq.
func testMarkAgentsLost(t *testing.T, open Opener) {
	s := open(t)
	ctx := context.Background()
	for _, id := range []string{"stale", "moved", "gone", "lost"} {
		mustRegisterAgent(t, s, store.Agent{ID: id, Hostname: id})
		mustUpdate(t, s, store.AgentStatus{ID: id, State: store.AgentConnected, StreamHolder: "dead", LastSeenAt: t0})
	}
	decided := map[string]int64{}
	for _, a := range mustListChanged(t, s, 0, 10) {
		decided[a.ID] = a.StatusSeq
	}
	// After the decision: "moved" reconnects elsewhere, "gone" is
	// deregistered; "lost" is marked before.
	mustUpdate(t, s, store.AgentStatus{ID: "moved", State: store.AgentConnected, StreamHolder: "alive"})
	if _, err := s.DeregisterAgent(ctx, "gone", t0, "retired"); err != nil {
		t.Fatal(err)
	}
	lossOf := func(id string) store.AgentLoss {
		return store.AgentLoss{ID: id, StatusSeq: decided[id], Reason: "replica dead"}
	}
	if marked, err := s.MarkAgentsLost(ctx, []store.AgentLoss{lossOf("lost")}, t0); err != nil || !slices.Equal(marked, []string{"lost"}) {
		t.Fatalf("MarkAgentsLost(lost) = %v, %v", marked, err)
	}
	lostRow := mustGetAgent(t, s, "lost")
	now := t0.Add(time.Minute)
	losses := []store.AgentLoss{lossOf("stale"), lossOf("moved"), lossOf("gone"), {ID: "lost", StatusSeq: lostRow.StatusSeq, Reason: "again"}, lossOf("unknown")}
	marked, err := s.MarkAgentsLost(ctx, losses, now)
	if err != nil || !slices.Equal(marked, []string{"stale"}) {
		t.Fatalf("MarkAgentsLost = %v, %v; want stale only", marked, err)
	}
	got := mustGetAgent(t, s, "stale")
	if got.State != store.AgentLost || got.StateReason != "replica dead" || !got.StateChangedAt.Equal(now) ||
		got.StreamHolder != "" || got.StatusSeq <= decided["stale"] {
		t.Errorf("stale after the mark = %+v, want lost, the reason, changed at %s, no holder, a new status_seq", got, now)
	}
	if moved := mustGetAgent(t, s, "moved"); moved.State != store.AgentConnected || moved.StreamHolder != "alive" {
		t.Errorf("moved = %+v, want its reconnect kept", moved)
	}
	if again := mustGetAgent(t, s, "lost"); again.StateReason != "replica dead" || again.StatusSeq != lostRow.StatusSeq {
		t.Errorf("an agent lost already was marked again: %+v", again)
	}
	if marked, err := s.MarkAgentsLost(ctx, nil, now); err != nil || len(marked) != 0 {
		t.Errorf("MarkAgentsLost(nil) = %v, %v; want nothing", marked, err)
	}
}

// testLiveLeases lists the unexpired leases under a prefix, by name.
func testLiveLeases(t *testing.T, open Opener) {
	s := open(t)
	ctx := context.Background()
	mustAcquire(t, s, "replica/b", "b", time.Minute)
	mustAcquire(t, s, "replica/a", "a", time.Minute)
	mustAcquire(t, s, "fleet", "a", time.Minute)
	released := mustAcquire(t, s, "replica/c", "c", time.Minute)
	if err := s.ReleaseLease(ctx, "replica/c", "c", released.Token); err != nil {
		t.Fatal(err)
	}
	mustAcquire(t, s, "replica/d", "d", 50*time.Millisecond)
	deadline := time.Now().Add(10 * time.Second)
	for {
		live, err := s.LiveLeases(ctx, "replica/")
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, l := range live {
			names = append(names, l.Name+"="+l.Holder)
		}
		if slices.Equal(names, []string{"replica/a=a", "replica/b=b"}) {
			break
		}
		if time.Now().After(deadline) || !slices.Equal(names, []string{"replica/a=a", "replica/b=b", "replica/d=d"}) {
			t.Fatalf("LiveLeases(replica/) = %v, want a and b (d until its 50ms run out)", names)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if live, err := s.LiveLeases(ctx, "nothing/"); err != nil || len(live) != 0 {
		t.Errorf("LiveLeases(nothing/) = %v, %v; want none", live, err)
	}
}

// testAttachReportsBackFromLost: an Attach write reports the agents it
// brought back from lost, once; a second attach, a heartbeat, or an attach
// over a state that was not lost reports nothing (issue 13: one agent.back
// per return, whichever replica the agent returns to).
func testAttachReportsBackFromLost(t *testing.T, open Opener) {
	s := open(t)
	ctx := context.Background()
	for _, id := range []string{"lost-1", "lost-2", "away"} {
		mustRegisterAgent(t, s, store.Agent{ID: id, Hostname: id})
		mustUpdate(t, s, store.AgentStatus{ID: id, State: store.AgentConnected, StreamHolder: "dead", LastSeenAt: t0})
	}
	var losses []store.AgentLoss
	for _, a := range mustListChanged(t, s, 0, 10) {
		if a.ID != "away" {
			losses = append(losses, store.AgentLoss{ID: a.ID, StatusSeq: a.StatusSeq, Reason: "replica dead"})
		}
	}
	if marked, err := s.MarkAgentsLost(ctx, losses, t0); err != nil || len(marked) != 2 {
		t.Fatalf("MarkAgentsLost = %v, %v", marked, err)
	}
	attach := func(id, holder string) store.AgentStatus {
		return store.AgentStatus{ID: id, State: store.AgentConnected, StreamHolder: holder, LastSeenAt: t0, Attach: true}
	}
	// lost-1 returns to r2; lost-2 only beats (no attach); away attaches
	// from connected; an unknown ID is skipped.
	beat := store.AgentStatus{ID: "lost-2", State: store.AgentConnected, StreamHolder: "r2", LastSeenAt: t0}
	back, err := s.UpdateAgentStatuses(ctx, []store.AgentStatus{attach("lost-1", "r2"), beat, attach("away", "r2"), attach("nobody", "r2")})
	if err != nil || !slices.Equal(back, []string{"lost-1"}) {
		t.Fatalf("UpdateAgentStatuses = %v, %v; want lost-1 back", back, err)
	}
	// lost-1 attaches again to r3: it is not lost any more.
	if back, err := s.UpdateAgentStatuses(ctx, []store.AgentStatus{attach("lost-1", "r3")}); err != nil || len(back) != 0 {
		t.Fatalf("second attach = %v, %v; want nothing back", back, err)
	}
	if got := mustGetAgent(t, s, "lost-1"); got.State != store.AgentConnected || got.StreamHolder != "r3" {
		t.Errorf("lost-1 = %+v, want connected to r3", got)
	}
}
