package commands_test

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/controlplane/internal/commands"
	"flotilla.dev/controlplane/internal/fleet"
	"flotilla.dev/controlplane/internal/store"
	"flotilla.dev/controlplane/internal/store/sqlite"
)

// replica is one control plane of a replica test: its own registry,
// dispatcher, manager and follower on the shared store.
type replica struct {
	reg *fleet.Registry
	d   *commands.Dispatcher
	m   *commands.Manager
}

// newReplicas starts n replicas on one store (no feed: they catch up every
// 10ms), each knowing agents; none attached.
func newReplicas(t *testing.T, st store.Store, n int, agents ...string) []*replica {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	out := make([]*replica, n)
	for i := range out {
		reg, err := fleet.New(fleet.Config{Store: st, Logger: zap.NewNop(), LostAfter: time.Minute, FlushInterval: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range agents {
			reg.Add(store.Agent{ID: a, State: store.AgentDisconnected, RegisteredAt: time.Now()})
		}
		d, err := commands.NewDispatcher(commands.DispatcherConfig{Store: st, Registry: reg, Replica: true})
		if err != nil {
			t.Fatal(err)
		}
		m, err := commands.NewManager(commands.ManagerConfig{Store: st, Registry: reg, Dispatcher: d})
		if err != nil {
			t.Fatal(err)
		}
		f, err := commands.NewFollower(commands.FollowerConfig{Store: st, Dispatcher: d, Manager: m, CatchUp: 10 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Init(ctx); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() { defer wg.Done(); _ = f.Run(ctx) }()
		out[i] = &replica{reg: reg, d: d, m: m}
	}
	return out
}

// attach opens agent's stream on r.
func (r *replica) attach(t *testing.T, agent string) *fleet.Session {
	t.Helper()
	s, err := r.reg.Attach(agent, &flotillav1.Hello{AgentId: agent}, "10.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	r.d.OnConnect(agent)
	return s
}

// awaitMessage returns the first message queued to s that match accepts,
// polling for up to 30s.
func awaitMessage(t *testing.T, s *fleet.Session, what string, match func(*flotillav1.ConnectResponse) bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		for _, msg := range s.Take() {
			if match(msg) {
				return
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("no %s reached the agent's stream", what)
}

// awaitFleetState polls the store until fcID is in state.
func awaitFleetState(t *testing.T, st store.Store, fcID string, state flotillav1.FleetCommandState) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		fc, err := st.GetFleetCommand(context.Background(), fcID)
		if err == nil && fc.State == int32(state) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("command %s: %v, %v; want %s", fcID, flotillav1.FleetCommandState(fc.State), err, state)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func openSQLite(t *testing.T) store.Store {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "flotilla.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

func pullRequest(agents ...string) *flotillav1.RunCommandRequest {
	return &flotillav1.RunCommandRequest{AgentIds: agents,
		Spec: &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Pull{Pull: &flotillav1.PullCommand{Image: "registry.example/app:v2"}}}}
}

// A command started on replica A reaches its agent through replica B,
// which holds the stream; the agent's events reach A through the store
// and finish the command there; a watcher on replica C sees every state.
func TestReplicaRelaysCommandsAndForwardsEvents(t *testing.T) {
	ctx := context.Background()
	st := openSQLite(t)
	rs := newReplicas(t, st, 3, "web-1")
	a, b, c := rs[0], rs[1], rs[2]
	sess := b.attach(t, "web-1")

	fc, err := a.m.Start(ctx, pullRequest("web-1"), "operator:test")
	if err != nil {
		t.Fatal(err)
	}
	hcID := fc.GetId() + ".web-1"
	type watched struct {
		msgs []*flotillav1.WatchCommandResponse
		err  error
	}
	watchDone := make(chan watched, 1)
	go func() {
		var w watched
		w.err = c.m.Watch(ctx, fc.GetId(), func(msg *flotillav1.WatchCommandResponse) error {
			w.msgs = append(w.msgs, msg)
			return nil
		})
		watchDone <- w
	}()
	awaitMessage(t, sess, "command", func(msg *flotillav1.ConnectResponse) bool { return msg.GetCommand().GetId() == hcID })

	for _, st := range []flotillav1.CommandState{flotillav1.CommandState_COMMAND_STATE_RUNNING, flotillav1.CommandState_COMMAND_STATE_SUCCEEDED} {
		if err := b.d.OnEvent(ctx, "web-1", &flotillav1.CommandEvent{CommandId: hcID, State: st, Message: st.String()}); err != nil {
			t.Fatal(err)
		}
	}
	awaitFleetState(t, st, fc.GetId(), flotillav1.FleetCommandState_FLEET_COMMAND_STATE_SUCCEEDED)

	var w watched
	select {
	case w = <-watchDone:
	case <-time.After(30 * time.Second):
		t.Fatal("the watch on replica C did not end with the command")
	}
	if w.err != nil {
		t.Fatalf("Watch on C: %v", w.err)
	}
	seen := map[flotillav1.CommandState]bool{}
	for _, msg := range w.msgs {
		if ev := msg.GetEvent(); ev != nil {
			seen[ev.GetEvent().GetState()] = true
		}
	}
	last := w.msgs[len(w.msgs)-1].GetSnapshot()
	if !seen[flotillav1.CommandState_COMMAND_STATE_SUCCEEDED] || last.GetState() != flotillav1.FleetCommandState_FLEET_COMMAND_STATE_SUCCEEDED {
		t.Fatalf("watch on C saw states %v and last snapshot %v; want SUCCEEDED and a final SUCCEEDED snapshot", seen, last.GetState())
	}
	if w.msgs[0].GetSnapshot() == nil {
		t.Error("the watch on C did not start with a snapshot")
	}
}

// A cancel asked on a replica that does not drive the command reaches the
// driver through the store, and its CancelCommand reaches the agent
// through the replica holding its stream.
func TestReplicaCancelReachesDriverAndAgent(t *testing.T) {
	ctx := context.Background()
	st := openSQLite(t)
	rs := newReplicas(t, st, 2, "web-1")
	a, b := rs[0], rs[1]
	sess := b.attach(t, "web-1")
	fc, err := a.m.Start(ctx, pullRequest("web-1"), "operator:test")
	if err != nil {
		t.Fatal(err)
	}
	hcID := fc.GetId() + ".web-1"
	awaitMessage(t, sess, "command", func(msg *flotillav1.ConnectResponse) bool { return msg.GetCommand().GetId() == hcID })
	if err := b.d.OnEvent(ctx, "web-1", &flotillav1.CommandEvent{CommandId: hcID, State: flotillav1.CommandState_COMMAND_STATE_RUNNING}); err != nil {
		t.Fatal(err)
	}
	// Wait for A to see RUNNING, so that the cancel is one to deliver.
	deadline := time.Now().Add(30 * time.Second)
	for hc, ok := a.d.Get(hcID); !ok || hc.State != int32(flotillav1.CommandState_COMMAND_STATE_RUNNING); hc, ok = a.d.Get(hcID) {
		if time.Now().After(deadline) {
			t.Fatal("replica A never saw the agent's RUNNING")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := b.m.Cancel(ctx, fc.GetId(), "operator changed their mind"); err != nil {
		t.Fatalf("Cancel on B: %v", err)
	}
	awaitMessage(t, sess, "cancel", func(msg *flotillav1.ConnectResponse) bool {
		return msg.GetCancel().GetCommandId() == hcID && msg.GetCancel().GetReason() == "operator changed their mind"
	})
	if err := b.d.OnEvent(ctx, "web-1", &flotillav1.CommandEvent{CommandId: hcID, State: flotillav1.CommandState_COMMAND_STATE_CANCELLED}); err != nil {
		t.Fatal(err)
	}
	awaitFleetState(t, st, fc.GetId(), flotillav1.FleetCommandState_FLEET_COMMAND_STATE_CANCELLED)
}

// An agent that attaches to a replica after its command was released gets
// it from the store; a replica that takes a running fleet command over
// (Adopt) finishes it with the events the agent sent meanwhile.
func TestReplicaAttachAndTakeover(t *testing.T) {
	ctx := context.Background()
	st := openSQLite(t)
	rs := newReplicas(t, st, 3, "web-1", "web-2")
	a, b, c := rs[0], rs[1], rs[2]
	fc, err := a.m.Start(ctx, pullRequest("web-1", "web-2"), "operator:test")
	if err != nil {
		t.Fatal(err)
	}
	id1, id2 := fc.GetId()+".web-1", fc.GetId()+".web-2"
	s1 := b.attach(t, "web-1")
	awaitMessage(t, s1, "command on attach", func(msg *flotillav1.ConnectResponse) bool { return msg.GetCommand().GetId() == id1 })

	// A stops driving (its lease moved); web-1 finishes meanwhile.
	a.m.Forget(fc.GetId())
	if err := b.d.OnEvent(ctx, "web-1", &flotillav1.CommandEvent{CommandId: id1, State: flotillav1.CommandState_COMMAND_STATE_SUCCEEDED}); err != nil {
		t.Fatal(err)
	}
	if err := c.m.Adopt(ctx, fc.GetId()); err != nil {
		t.Fatal(err)
	}
	s2 := b.attach(t, "web-2")
	awaitMessage(t, s2, "command after the takeover", func(msg *flotillav1.ConnectResponse) bool { return msg.GetCommand().GetId() == id2 })
	if err := b.d.OnEvent(ctx, "web-2", &flotillav1.CommandEvent{CommandId: id2, State: flotillav1.CommandState_COMMAND_STATE_SUCCEEDED}); err != nil {
		t.Fatal(err)
	}
	awaitFleetState(t, st, fc.GetId(), flotillav1.FleetCommandState_FLEET_COMMAND_STATE_SUCCEEDED)
}

// A cancel asked while no replica drives the command is carried out by
// the replica that takes it over.
func TestReplicaCancelWhileOrphaned(t *testing.T) {
	ctx := context.Background()
	st := openSQLite(t)
	rs := newReplicas(t, st, 3, "web-1")
	a, b, c := rs[0], rs[1], rs[2]
	sess := b.attach(t, "web-1")
	fc, err := a.m.Start(ctx, pullRequest("web-1"), "operator:test")
	if err != nil {
		t.Fatal(err)
	}
	hcID := fc.GetId() + ".web-1"
	awaitMessage(t, sess, "command", func(msg *flotillav1.ConnectResponse) bool { return msg.GetCommand().GetId() == hcID })
	if err := b.d.OnEvent(ctx, "web-1", &flotillav1.CommandEvent{CommandId: hcID, State: flotillav1.CommandState_COMMAND_STATE_RUNNING}); err != nil {
		t.Fatal(err)
	}
	a.m.Forget(fc.GetId())
	if _, err := b.m.Cancel(ctx, fc.GetId(), "stop it"); err != nil {
		t.Fatalf("Cancel on B: %v", err)
	}
	if err := c.m.Adopt(ctx, fc.GetId()); err != nil {
		t.Fatal(err)
	}
	awaitMessage(t, sess, "cancel", func(msg *flotillav1.ConnectResponse) bool {
		return msg.GetCancel().GetCommandId() == hcID && msg.GetCancel().GetReason() == "stop it"
	})
	if err := b.d.OnEvent(ctx, "web-1", &flotillav1.CommandEvent{CommandId: hcID, State: flotillav1.CommandState_COMMAND_STATE_CANCELLED}); err != nil {
		t.Fatal(err)
	}
	awaitFleetState(t, st, fc.GetId(), flotillav1.FleetCommandState_FLEET_COMMAND_STATE_CANCELLED)
}

// newLeasedReplica is a replica whose Manager drives fleet commands under
// leases held as holder (its claimer not running until the test runs it).
func newLeasedReplica(t *testing.T, st store.Store, holder string, agents ...string) *replica {
	t.Helper()
	reg, err := fleet.New(fleet.Config{Store: st, Logger: zap.NewNop(), LostAfter: time.Minute, FlushInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range agents {
		reg.Add(store.Agent{ID: a, State: store.AgentDisconnected, RegisteredAt: time.Now()})
	}
	d, err := commands.NewDispatcher(commands.DispatcherConfig{Store: st, Registry: reg, Replica: true})
	if err != nil {
		t.Fatal(err)
	}
	m, err := commands.NewManager(commands.ManagerConfig{Store: st, Registry: reg, Dispatcher: d,
		Holder: holder, Leases: st, LeaseTTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	return &replica{reg: reg, d: d, m: m}
}

// A replica that drives a fleet command without holding its lease (its
// claimer stopped) does not record the command's end; the replica whose
// claimer takes the lease does.
func TestReplicaWithoutTheLeaseDoesNotRecordTheEnd(t *testing.T) {
	ctx := context.Background()
	st := openSQLite(t)
	a := newLeasedReplica(t, st, "holder-a", "web-1")
	sess := a.attach(t, "web-1")
	fc, err := a.m.Start(ctx, pullRequest("web-1"), "operator:test")
	if err != nil {
		t.Fatal(err)
	}
	hcID := fc.GetId() + ".web-1"
	awaitMessage(t, sess, "command", func(msg *flotillav1.ConnectResponse) bool { return msg.GetCommand().GetId() == hcID })
	if err := a.d.OnEvent(ctx, "web-1", &flotillav1.CommandEvent{CommandId: hcID, State: flotillav1.CommandState_COMMAND_STATE_SUCCEEDED}); err != nil {
		t.Fatal(err)
	}
	if running := a.m.Running(); len(running) != 0 {
		t.Fatalf("replica A still drives %v after the last host ended", running)
	}
	if got, err := st.GetFleetCommand(ctx, fc.GetId()); err != nil || got.State != int32(flotillav1.FleetCommandState_FLEET_COMMAND_STATE_RUNNING) {
		t.Fatalf("fleet command in the store = %v, %v; want RUNNING (A held no lease)", flotillav1.FleetCommandState(got.State), err)
	}

	c := newLeasedReplica(t, st, "holder-c", "web-1")
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.m.Run(runCtx) }()
	t.Cleanup(func() { stop(); <-done })
	awaitFleetState(t, st, fc.GetId(), flotillav1.FleetCommandState_FLEET_COMMAND_STATE_SUCCEEDED)
}
