package fleet_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"flotilla.dev/controlplane/internal/fleet"
	"flotilla.dev/controlplane/internal/store"
)

const (
	reasonRegistered = "registered; waiting for the first stream"
	reasonOpened     = "stream opened from 10.0.0.1:5000"
	reasonNoStream   = "no stream and no heartbeat for 30s"
	reasonHalfOpen   = "stream open but no heartbeat for 30s; stream closed"
	reasonRestarted  = "control plane restarted; waiting for the agent to reconnect"
	reasonEOF        = "stream ended: EOF"
)

// liveEnv is one liveness scenario: a registry loaded at t0 and the
// sessions of its single agent "a1", newest last.
type liveEnv struct {
	t        *testing.T
	st       store.Store
	r        *fleet.Registry
	clk      *fakeClock
	sessions []*fleet.Session
}

func (e *liveEnv) session() *fleet.Session { return e.sessions[len(e.sessions)-1] }

func (e *liveEnv) register() { register(e.t, e.st, e.r, "a1", e.clk.Now(), nil, nil) }

func (e *liveEnv) attach() {
	e.sessions = append(e.sessions, mustAttach(e.t, e.r, "a1", nil, "10.0.0.1:5000"))
}

func (e *liveEnv) heartbeat() { mustHeartbeat(e.t, e.r, e.session(), heartbeatMsg(10, true)) }

func (e *liveEnv) detach() { e.r.Detach(e.session(), reasonEOF) }

// expectSession checks whether the newest session is open, or closed with want.
func (e *liveEnv) expectSession(want error) {
	e.t.Helper()
	s := e.session()
	if want == nil {
		if isClosed(s) {
			e.t.Errorf("session closed (%v), want open", s.Err())
		}
		return
	}
	if !isClosed(s) {
		e.t.Fatalf("session open, want closed with %v", want)
	}
	if !errors.Is(s.Err(), want) {
		e.t.Errorf("session Err = %v, want %v", s.Err(), want)
	}
}

// TestSweep drives one agent through liveness scenarios. Each step sets the
// fake clock to t0+at, runs do, calls Sweep once and checks the agent's state
// and reason.
func TestSweep(t *testing.T) {
	type step struct {
		at         time.Duration
		do         func(e *liveEnv)
		wantState  string
		wantReason string
		check      func(e *liveEnv)
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{
			name: "registered and never connected: lost LostAfter after registration",
			steps: []step{
				{at: 0, do: (*liveEnv).register, wantState: store.AgentDisconnected, wantReason: reasonRegistered},
				{at: 29 * time.Second, wantState: store.AgentDisconnected, wantReason: reasonRegistered},
				{at: 30 * time.Second, wantState: store.AgentLost, wantReason: reasonNoStream},
				{at: time.Hour, wantState: store.AgentLost, wantReason: reasonNoStream},
			},
		},
		{
			// The registry was loaded at t0; an agent that registers an hour
			// later still gets LostAfter from its registration to connect.
			name: "registered long after start: lost LostAfter after registration, not after start",
			steps: []step{
				{at: time.Hour, do: (*liveEnv).register, wantState: store.AgentDisconnected, wantReason: reasonRegistered},
				{at: time.Hour + time.Second, wantState: store.AgentDisconnected, wantReason: reasonRegistered},
				{at: time.Hour + 29*time.Second, wantState: store.AgentDisconnected, wantReason: reasonRegistered},
				{at: time.Hour + 30*time.Second, wantState: store.AgentLost, wantReason: reasonNoStream},
			},
		},
		{
			name: "attach connects, detach disconnects, lost LostAfter after the last message",
			steps: []step{
				{at: 0, do: (*liveEnv).register, wantState: store.AgentDisconnected, wantReason: reasonRegistered},
				{at: 5 * time.Second, do: (*liveEnv).attach, wantState: store.AgentConnected, wantReason: reasonOpened,
					check: func(e *liveEnv) { e.expectSession(nil) }},
				{at: 10 * time.Second, do: (*liveEnv).heartbeat, wantState: store.AgentConnected, wantReason: reasonOpened},
				{at: 12 * time.Second, do: (*liveEnv).detach, wantState: store.AgentDisconnected, wantReason: reasonEOF,
					check: func(e *liveEnv) {
						if isClosed(e.session()) && fleet.IsReplaced(e.session().Err()) {
							e.t.Errorf("detached session reports IsReplaced")
						}
						if mustGet(e.t, e.r, "a1").Connected {
							e.t.Errorf("Connected = true after Detach")
						}
					}},
				{at: 39 * time.Second, wantState: store.AgentDisconnected, wantReason: reasonEOF},
				{at: 40 * time.Second, wantState: store.AgentLost, wantReason: reasonNoStream},
			},
		},
		{
			name: "connected agent that stops heartbeating is lost and its stream closed with ErrLost",
			steps: []step{
				{at: 0, do: func(e *liveEnv) { e.register(); e.attach() }, wantState: store.AgentConnected, wantReason: reasonOpened},
				{at: 29 * time.Second, wantState: store.AgentConnected, wantReason: reasonOpened,
					check: func(e *liveEnv) { e.expectSession(nil) }},
				{at: 30 * time.Second, wantState: store.AgentLost, wantReason: reasonHalfOpen,
					check: func(e *liveEnv) {
						e.expectSession(fleet.ErrLost)
						if mustGet(e.t, e.r, "a1").Connected {
							e.t.Errorf("Connected = true for a lost agent")
						}
						if err := e.r.Heartbeat(e.session(), heartbeatMsg(1, true)); err == nil {
							e.t.Errorf("Heartbeat on the closed session = nil, want an error")
						}
					}},
				// The stream handler sees Done and detaches: no state change.
				{at: 31 * time.Second, do: (*liveEnv).detach, wantState: store.AgentLost, wantReason: reasonHalfOpen},
				// The agent comes back on a new stream.
				{at: 40 * time.Second, do: (*liveEnv).attach, wantState: store.AgentConnected, wantReason: reasonOpened,
					check: func(e *liveEnv) { e.expectSession(nil) }},
			},
		},
		{
			name: "heartbeats and other messages keep a connected agent alive",
			steps: []step{
				{at: 0, do: func(e *liveEnv) { e.register(); e.attach() }, wantState: store.AgentConnected, wantReason: reasonOpened},
				{at: 20 * time.Second, do: (*liveEnv).heartbeat, wantState: store.AgentConnected, wantReason: reasonOpened},
				{at: 49 * time.Second, wantState: store.AgentConnected, wantReason: reasonOpened},
				{at: 45 * time.Second, do: func(e *liveEnv) { e.r.Touch(e.session()) }, wantState: store.AgentConnected, wantReason: reasonOpened},
				{at: 74 * time.Second, wantState: store.AgentConnected, wantReason: reasonOpened,
					check: func(e *liveEnv) { e.expectSession(nil) }},
				{at: 75 * time.Second, wantState: store.AgentLost, wantReason: reasonHalfOpen,
					check: func(e *liveEnv) { e.expectSession(fleet.ErrLost) }},
			},
		},
		{
			name: "disconnected agent that reconnects in time stays alive",
			steps: []step{
				{at: 0, do: func(e *liveEnv) { e.register(); e.attach() }, wantState: store.AgentConnected, wantReason: reasonOpened},
				{at: 5 * time.Second, do: (*liveEnv).detach, wantState: store.AgentDisconnected, wantReason: reasonEOF},
				{at: 20 * time.Second, do: (*liveEnv).attach, wantState: store.AgentConnected, wantReason: reasonOpened},
				{at: 49 * time.Second, wantState: store.AgentConnected, wantReason: reasonOpened},
				{at: 50 * time.Second, wantState: store.AgentLost, wantReason: reasonHalfOpen},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newClock(t0)
			st := openStore(t)
			e := &liveEnv{t: t, st: st, clk: clk, r: newRegistry(t, st, clk)}
			for _, s := range tt.steps {
				clk.Set(at(s.at))
				if s.do != nil {
					s.do(e)
				}
				e.r.Sweep()
				got := mustGet(t, e.r, "a1")
				if got.Record.State != s.wantState || got.Record.StateReason != s.wantReason {
					t.Fatalf("at t0+%s: state %s, want %s (%q)", s.at, fmtState(got), s.wantState, s.wantReason)
				}
				if s.check != nil {
					s.check(e)
				}
			}
		})
	}
}

func TestSweepStateChangedAt(t *testing.T) {
	clk := newClock(t0)
	st := openStore(t)
	r := newRegistry(t, st, clk)
	register(t, st, r, "a1", t0, nil, nil)
	clk.Set(at(31 * time.Second)) // first sweep after the deadline
	r.Sweep()
	got := mustGet(t, r, "a1")
	if got.Record.State != store.AgentLost || !got.Record.StateChangedAt.Equal(at(31*time.Second)) {
		t.Errorf("state %s changed at %s, want lost at %s", fmtState(got), got.Record.StateChangedAt, at(31*time.Second))
	}
	clk.Set(at(time.Minute))
	r.Sweep() // already lost: no new change
	if got := mustGet(t, r, "a1"); !got.Record.StateChangedAt.Equal(at(31 * time.Second)) {
		t.Errorf("a second sweep moved StateChangedAt to %s", got.Record.StateChangedAt)
	}
}

// TestLoadAfterRestart persists agents through one registry, then loads them
// into a second one an hour later, as a restarted control plane would.
func TestLoadAfterRestart(t *testing.T) {
	st := openStore(t)
	clk := newClock(t0)
	r1 := newRegistry(t, st, clk)
	for _, id := range []string{"a1", "a2", "a3"} {
		register(t, st, r1, id, t0, map[string]string{"env": "prod"}, nil)
	}
	s1 := mustAttach(t, r1, "a1", map[string]string{"env": "prod", "role": "web"}, "10.0.0.1:5000")
	hb := heartbeatMsg(33, true)
	mustHeartbeat(t, r1, s1, hb)
	s2 := mustAttach(t, r1, "a2", nil, "10.0.0.2:5000")
	clk.Set(at(5 * time.Second))
	r1.Detach(s2, reasonEOF)
	clk.Set(at(40 * time.Second))
	mustHeartbeat(t, r1, s1, heartbeatMsg(33, true))
	r1.Sweep() // a2 (last message at t0) and a3 (never connected) are lost
	clk.Set(at(45 * time.Second))
	mustHeartbeat(t, r1, s1, heartbeatMsg(33, true))
	mustFlush(t, r1)
	for id, want := range map[string]string{"a1": store.AgentConnected, "a2": store.AgentLost, "a3": store.AgentLost} {
		if got := mustStored(t, st, id).State; got != want {
			t.Fatalf("before restart: stored %s state %s, want %s", id, got, want)
		}
	}
	// Also a disconnected agent with an old LastSeenAt: a4 detached long ago.
	register(t, st, r1, "a4", at(40*time.Second), nil, nil)
	s4 := mustAttach(t, r1, "a4", nil, "10.0.0.4:5000")
	r1.Detach(s4, reasonEOF)
	mustFlush(t, r1)

	// The process dies; a new one starts an hour later.
	load := at(time.Hour)
	clk.Set(load)
	r2 := newRegistry(t, st, clk)

	wantAfterLoad := []struct {
		id, state, reason string
	}{
		{"a1", store.AgentDisconnected, reasonRestarted},
		{"a2", store.AgentLost, reasonNoStream},
		{"a3", store.AgentLost, reasonNoStream},
		{"a4", store.AgentDisconnected, reasonEOF},
	}
	check := func(when string, want []struct{ id, state, reason string }) {
		t.Helper()
		for _, w := range want {
			got := mustGet(t, r2, w.id)
			if got.Record.State != w.state || got.Record.StateReason != w.reason {
				t.Errorf("%s: %s is %s, want %s (%q)", when, w.id, fmtState(got), w.state, w.reason)
			}
			if got.Connected {
				t.Errorf("%s: %s Connected = true with no stream", when, w.id)
			}
		}
	}
	check("after Load", wantAfterLoad)

	a1 := mustGet(t, r2, "a1")
	if !a1.Record.StateChangedAt.Equal(load) {
		t.Errorf("a1 StateChangedAt = %s, want the load time %s", a1.Record.StateChangedAt, load)
	}
	if !a1.Record.LastSeenAt.Equal(at(45 * time.Second)) {
		t.Errorf("a1 LastSeenAt = %s, want %s", a1.Record.LastSeenAt, at(45*time.Second))
	}
	if a1.Hello.GetVersion() != "v1.2.3" || a1.Hello.GetLabels()["role"] != "web" {
		t.Errorf("a1 Hello after Load = %v, want the persisted hello", a1.Hello)
	}
	if a1.LastHeartbeat.GetHost().GetCpuPercent() != 33 || !a1.LastHeartbeat.GetApp().GetHealthy() {
		t.Errorf("a1 LastHeartbeat after Load = %v, want the persisted heartbeat", a1.LastHeartbeat)
	}

	// LastSeenAt is an hour old, but the agents get LostAfter from the load.
	clk.Set(load)
	r2.Sweep()
	check("sweep at load", wantAfterLoad)
	clk.Set(load.Add(29 * time.Second))
	r2.Sweep()
	check("sweep at load+29s", wantAfterLoad)
	clk.Set(load.Add(30 * time.Second))
	r2.Sweep()
	check("sweep at load+30s", []struct{ id, state, reason string }{
		{"a1", store.AgentLost, reasonNoStream},
		{"a2", store.AgentLost, reasonNoStream},
		{"a3", store.AgentLost, reasonNoStream},
		{"a4", store.AgentLost, reasonNoStream},
	})
	mustFlush(t, r2)
	if got := mustStored(t, st, "a1"); got.State != store.AgentLost || got.StateReason != reasonNoStream {
		t.Errorf("stored a1 after flush: %s (%q), want lost", got.State, got.StateReason)
	}
	// The hello and heartbeat written by the first process are kept.
	if got := mustStored(t, st, "a1"); decodeHello(t, got.Hello).GetVersion() != "v1.2.3" || decodeHeartbeat(t, got.LastHeartbeat).GetHost().GetCpuPercent() != 33 {
		t.Errorf("stored a1 lost its hello or heartbeat across the restart")
	}

	// A lost agent that reconnects is connected again.
	s := mustAttach(t, r2, "a1", nil, "10.0.0.1:5001")
	if got := mustGet(t, r2, "a1"); got.Record.State != store.AgentConnected || !got.Connected {
		t.Errorf("a1 after reconnect: %s, Connected %v", fmtState(got), got.Connected)
	}
	r2.Detach(s, reasonEOF)
}

func TestRunLoopsStopWithContext(t *testing.T) {
	st := openStore(t)
	clk := newClock(t0)
	r := newRegistry(t, st, clk) // FlushInterval 1h: only the final flush writes
	register(t, st, r, "a1", t0, nil, nil)
	s := mustAttach(t, r, "a1", nil, "10.0.0.1:5000")
	defer r.Detach(s, reasonEOF)

	ctx, cancel := context.WithCancel(context.Background())
	liveness, flusher := make(chan error, 1), make(chan error, 1)
	go func() { liveness <- r.RunLiveness(ctx) }()
	go func() { flusher <- r.RunFlusher(ctx) }()
	cancel()
	if err := <-liveness; err != nil {
		t.Errorf("RunLiveness = %v, want nil", err)
	}
	if err := <-flusher; err != nil {
		t.Errorf("RunFlusher = %v, want nil", err)
	}
	// RunFlusher flushes once more on the way out.
	if got := mustStored(t, st, "a1"); got.State != store.AgentConnected || got.PeerAddress != "10.0.0.1:5000" {
		t.Errorf("stored after RunFlusher returned: state %s, peer %q; want connected from 10.0.0.1:5000", got.State, got.PeerAddress)
	}
}

// TestReconnectGrace: after a restart, agents not heard from since get the
// reconnect grace to come back, however long ago their last message was;
// once one has reconnected (or registered after the start), agent_lost_after
// applies again.
func TestReconnectGrace(t *testing.T) {
	st := openStore(t)
	clk := newClock(t0)
	r1 := newRegistry(t, st, clk)
	for _, id := range []string{"a1", "a2"} {
		register(t, st, r1, id, t0, nil, nil)
		s := mustAttach(t, r1, id, nil, "10.0.0.1:5000")
		mustHeartbeat(t, r1, s, heartbeatMsg(10, true))
	}
	mustFlush(t, r1)

	start := at(time.Hour)
	clk.Set(start)
	const grace = 3 * lostAfter
	r2, err := fleet.New(fleet.Config{Store: st, Logger: zaptest.NewLogger(t), Now: clk.Now,
		LostAfter: lostAfter, ReconnectGrace: grace, PersistInterval: time.Minute, FlushInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := r2.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	if r2.ReconnectGrace() != grace {
		t.Errorf("ReconnectGrace = %s, want %s", r2.ReconnectGrace(), grace)
	}
	// a1 comes back within the grace, then goes silent again.
	clk.Set(start.Add(lostAfter))
	r2.Sweep()
	if got := mustGet(t, r2, "a2").Record.State; got != store.AgentDisconnected {
		t.Fatalf("a2 after agent_lost_after of a restart: %s, want disconnected (within the grace)", got)
	}
	s1 := mustAttach(t, r2, "a1", nil, "10.0.0.1:5001")
	r2.Detach(s1, reasonEOF)
	clk.Set(start.Add(2 * lostAfter))
	r2.Sweep()
	if got := mustGet(t, r2, "a1").Record.State; got != store.AgentLost {
		t.Errorf("a1, silent for agent_lost_after after reconnecting: %s, want lost", got)
	}
	if got := mustGet(t, r2, "a2").Record.State; got != store.AgentDisconnected {
		t.Errorf("a2 within the grace: %s, want disconnected", got)
	}
	clk.Set(start.Add(grace))
	r2.Sweep()
	if got := mustGet(t, r2, "a2"); got.Record.State != store.AgentLost || !strings.Contains(got.Record.StateReason, grace.String()) {
		t.Errorf("a2 at the end of the grace: %s (%q), want lost after %s", got.Record.State, got.Record.StateReason, grace)
	}

	// The grace is never shorter than agent_lost_after.
	r3, err := fleet.New(fleet.Config{Store: st, LostAfter: lostAfter, ReconnectGrace: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if r3.ReconnectGrace() != lostAfter {
		t.Errorf("ReconnectGrace below LostAfter = %s, want %s", r3.ReconnectGrace(), lostAfter)
	}
}

// TestFlushManyAgents: a flush larger than one transaction's batch writes
// every agent.
func TestFlushManyAgents(t *testing.T) {
	st := openStore(t)
	clk := newClock(t0)
	r := newRegistry(t, st, clk)
	const n = 600 // more than two batches
	for i := range n {
		id := fmt.Sprintf("a%03d", i)
		register(t, st, r, id, t0, nil, nil)
		mustAttach(t, r, id, nil, "10.0.0.1:5000")
	}
	mustFlush(t, r)
	for i := range n {
		id := fmt.Sprintf("a%03d", i)
		if got := mustStored(t, st, id).State; got != store.AgentConnected {
			t.Fatalf("%s stored %s after the flush, want connected", id, got)
		}
	}
}
