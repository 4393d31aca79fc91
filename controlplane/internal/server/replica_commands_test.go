package server_test

import (
	"context"
	"errors"
	"io"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/controlplane/internal/server/servertest"
	"flotilla.dev/controlplane/internal/store/postgres"
)

// takeoverWait bounds a wait that spans a lease's claim interval (a
// fleet command taken over by another replica).
const takeoverWait = 60 * time.Second

// replicaSet starts three replicas on one PostgreSQL database and
// registers agents on the first before the others start (each loads the
// fleet when it starts). The agents are not connected.
func replicaSet(t *testing.T, agents int) (hs []*harness, fleet []*scriptedAgent, dsn string) {
	t.Helper()
	r := servertest.StartReplicas(t, 1)
	first := harnessOf(t, r.All[0])
	fleet = first.scriptedFleet("rep", agents, false)
	hs = []*harness{first, harnessOf(t, r.Add()), harnessOf(t, r.Add())}
	return hs, fleet, r.DSN
}

// nextCommandWithin returns the next message, which must be a command,
// waiting up to timeout.
func (a *scriptedAgent) nextCommandWithin(timeout time.Duration) *flotillav1.Command {
	a.t.Helper()
	select {
	case m := <-a.msgs:
		if m.GetCommand() == nil {
			a.t.Fatalf("%s: got %v, want a command", a.id, m)
		}
		return m.GetCommand()
	case <-time.After(timeout):
		a.t.Fatalf("%s: no command from the control plane within %s", a.id, timeout)
		return nil
	}
}

// watchAll collects a WatchCommand stream's messages until it ends.
type watchAll struct {
	mu   sync.Mutex
	msgs []*flotillav1.WatchCommandResponse
	err  error
	done chan struct{}
}

func (h *harness) watchAll(t *testing.T, id string) *watchAll {
	t.Helper()
	ctx, cancel := context.WithCancel(h.operatorCtx(h.admin))
	t.Cleanup(cancel)
	stream, err := h.fleet().WatchCommand(ctx, &flotillav1.WatchCommandRequest{CommandId: id})
	if err != nil {
		t.Fatal(err)
	}
	// The snapshot first, so that what happens next reaches the watcher
	// as events.
	first, err := stream.Recv()
	if err != nil || first.GetSnapshot().GetState() != flotillav1.FleetCommandState_FLEET_COMMAND_STATE_RUNNING {
		t.Fatalf("first watch message = %v, %v; want a snapshot of the running command", first, err)
	}
	w := &watchAll{done: make(chan struct{}), msgs: []*flotillav1.WatchCommandResponse{first}}
	go func() {
		defer close(w.done)
		for {
			msg, err := stream.Recv()
			w.mu.Lock()
			if err != nil {
				if !errors.Is(err, io.EOF) {
					w.err = err
				}
				w.mu.Unlock()
				return
			}
			w.msgs = append(w.msgs, msg)
			w.mu.Unlock()
		}
	}()
	return w
}

// wait waits for the watch to end and returns the states its events told
// per command and the last snapshot's state.
func (w *watchAll) wait(t *testing.T) (map[string][]flotillav1.CommandState, flotillav1.FleetCommandState) {
	t.Helper()
	select {
	case <-w.done:
	case <-time.After(takeoverWait):
		t.Fatal("the watch did not end with the command")
	}
	if w.err != nil {
		t.Fatalf("watch: %v", w.err)
	}
	states := map[string][]flotillav1.CommandState{}
	var last flotillav1.FleetCommandState
	for _, msg := range w.msgs {
		if ev := msg.GetEvent().GetEvent(); ev != nil {
			states[ev.GetCommandId()] = append(states[ev.GetCommandId()], ev.GetState())
		}
		if s := msg.GetSnapshot(); s != nil {
			last = s.GetState()
		}
	}
	return states, last
}

func hasState(states []flotillav1.CommandState, want flotillav1.CommandState) bool {
	for _, s := range states {
		if s == want {
			return true
		}
	}
	return false
}

// A command started on replica A reaches its agent through replica B,
// which holds the agent's stream, exactly once; the agent's events reach
// A; a watcher on replica C sees every state; GetCommand on C reads the
// outcome.
func TestReplicasRunCommandAcrossReplicas(t *testing.T) {
	hs, agents, _ := replicaSet(t, 1)
	b, a, c := hs[0], hs[1], hs[2]
	agent := agents[0]
	agent.connect(b)

	fc := a.commands().run(&flotillav1.RunCommandRequest{Spec: restartSpec(), AgentIds: []string{agent.id}})
	watch := c.watchAll(t, fc.GetId())
	cmd := agent.nextCommand()
	if cmd.GetId() != fc.GetId()+"."+agent.id {
		t.Fatalf("agent received %s, want %s.%s", cmd.GetId(), fc.GetId(), agent.id)
	}
	agent.event(cmd.GetId(), stateRunning, "restarting", nil)
	agent.event(cmd.GetId(), stateRunning, "stopping the old container", nil) // progress
	agent.event(cmd.GetId(), stateRunning, "starting the new one", nil)       // progress
	agent.event(cmd.GetId(), stateSucceeded, "restarted", nil)
	got := c.commands().waitState(fc.GetId(), flotillav1.FleetCommandState_FLEET_COMMAND_STATE_SUCCEEDED)
	if h := host(t, got, agent.id); h.GetState() != stateSucceeded || h.GetMessage() != "restarted" {
		t.Errorf("host on C = %v, want SUCCEEDED with the agent's message", h)
	}
	states, last := watch.wait(t)
	if !hasState(states[cmd.GetId()], stateRunning) || !hasState(states[cmd.GetId()], stateSucceeded) ||
		last != flotillav1.FleetCommandState_FLEET_COMMAND_STATE_SUCCEEDED {
		t.Errorf("watch on C saw %v and ended with %v; want RUNNING, SUCCEEDED and a final SUCCEEDED snapshot", states, last)
	}
	// Every event the agent sent, progress included, in order (issue 13:
	// a watcher on a replica that does not drive the command saw a
	// collapsed history).
	var seen []string
	for _, msg := range watch.msgs {
		if ev := msg.GetEvent().GetEvent(); ev != nil && ev.GetCommandId() == cmd.GetId() && ev.GetState() != flotillav1.CommandState_COMMAND_STATE_PENDING {
			seen = append(seen, ev.GetMessage())
		}
	}
	if want := []string{"restarting", "stopping the old container", "starting the new one", "restarted"}; !slices.Equal(seen, want) {
		t.Errorf("watch on C saw the events %q, want the agent's %q", seen, want)
	}
	agent.heartbeat() // whatever B would still send is queued by now
	agent.expectNothing("the command was delivered once")
}

// Killing every replica's feed connection (lost notifications) only
// delays delivery: the replicas catch up on their own and on reconnect.
func TestReplicasLostNotificationOnlyDelays(t *testing.T) {
	hs, agents, dsn := replicaSet(t, 1)
	b, a := hs[0], hs[1]
	agent := agents[0]
	agent.connect(b)
	killFeeds := func() {
		t.Helper()
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		var killed int
		if err := conn.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1`,
			postgres.FeedApplicationName).Scan(&killed); err != nil || killed == 0 {
			t.Fatalf("terminating the feeds' connections: %d killed, %v; want some", killed, err)
		}
	}
	killFeeds()
	fc := a.commands().run(&flotillav1.RunCommandRequest{Spec: restartSpec(), AgentIds: []string{agent.id}})
	cmd := agent.nextCommand()
	killFeeds()
	agent.event(cmd.GetId(), stateSucceeded, "restarted", nil)
	a.commands().waitState(fc.GetId(), flotillav1.FleetCommandState_FLEET_COMMAND_STATE_SUCCEEDED)
}

// Stopping the replica that drives a fleet command mid-command: another
// replica takes the command over (its lease) and finishes it, with the
// outcome the agent reported meanwhile.
func TestReplicasTakeOverAFleetCommand(t *testing.T) {
	hs, agents, _ := replicaSet(t, 2)
	b, a, c := hs[0], hs[1], hs[2]
	for _, ag := range agents {
		ag.connect(b)
	}
	fc := a.commands().run(&flotillav1.RunCommandRequest{Spec: restartSpec(), AgentIds: ids(agents), MaxConcurrency: count(1)})
	first := agents[0].nextCommand()
	a.stop()
	agents[0].event(first.GetId(), stateSucceeded, "restarted", nil)
	second := agents[1].nextCommandWithin(takeoverWait)
	if second.GetId() != fc.GetId()+"."+agents[1].id {
		t.Fatalf("second agent received %s, want %s.%s", second.GetId(), fc.GetId(), agents[1].id)
	}
	agents[1].event(second.GetId(), stateSucceeded, "restarted", nil)
	got := c.commands().waitState(fc.GetId(), flotillav1.FleetCommandState_FLEET_COMMAND_STATE_SUCCEEDED)
	wantSummary(t, got, map[string]int32{"succeeded": 2})
}
