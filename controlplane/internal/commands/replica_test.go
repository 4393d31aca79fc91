package commands_test

import (
	"context"
	"path/filepath"
	"slices"
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
func TestReplicaCancelWhileOrphaned(t *testing.T) { cancelAcrossTakeover(t, false) }

// A cancel that comes while a replica takes a command over — its Follower
// reading the stored request, or an operator calling it there — between
// the command's joining the replica's running ones and its host commands'
// joining the dispatcher, still stops the command on the agent.
func TestReplicaCancelDuringAdopt(t *testing.T) { cancelAcrossTakeover(t, true) }

// cancelAcrossTakeover runs a pull on web-1, whose stream is on replica B,
// from replica A, which then stops driving it; replica C takes it over. The
// cancel is asked on B before the takeover, or on C during it (duringAdopt).
// Either way the cancel reaches web-1's stream and ends the command.
func cancelAcrossTakeover(t *testing.T, duringAdopt bool) {
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
	if duringAdopt {
		commands.SetAdoptingHook(c.m, func(fcID string) {
			if _, err := c.m.Cancel(ctx, fcID, "stop it"); err != nil {
				t.Errorf("Cancel on C during Adopt: %v", err)
			}
		})
	} else if _, err := b.m.Cancel(ctx, fc.GetId(), "stop it"); err != nil {
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

// A replica that could not take the lease of a fleet command it created
// (its claimer not running) does not drive it and records nothing of it;
// the replica whose claimer takes the lease adopts it from the store,
// delivers it and records its end.
func TestReplicaWithoutTheLeaseDoesNotDriveTheCommand(t *testing.T) {
	ctx := context.Background()
	st := openSQLite(t)
	a := newLeasedReplica(t, st, "holder-a", "web-1")
	fc, err := a.m.Start(ctx, pullRequest("web-1"), "operator:test")
	if err != nil {
		t.Fatal(err)
	}
	hcID := fc.GetId() + ".web-1"
	if running := a.m.Running(); len(running) != 0 {
		t.Fatalf("replica A drives %v without the command's lease", running)
	}
	if _, held := a.d.Get(hcID); held {
		t.Fatalf("replica A's dispatcher holds %s without the command's lease", hcID)
	}

	c := newLeasedReplica(t, st, "holder-c", "web-1")
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.m.Run(runCtx) }()
	t.Cleanup(func() { stop(); <-done })
	deadline := time.Now().Add(30 * time.Second)
	for len(c.m.Running()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("replica C did not take the command over")
		}
		time.Sleep(5 * time.Millisecond)
	}
	sess := c.attach(t, "web-1")
	awaitMessage(t, sess, "command", func(msg *flotillav1.ConnectResponse) bool { return msg.GetCommand().GetId() == hcID })
	if err := c.d.OnEvent(ctx, "web-1", &flotillav1.CommandEvent{CommandId: hcID, State: flotillav1.CommandState_COMMAND_STATE_SUCCEEDED}); err != nil {
		t.Fatal(err)
	}
	awaitFleetState(t, st, fc.GetId(), flotillav1.FleetCommandState_FLEET_COMMAND_STATE_SUCCEEDED)
}

// A dispatcher whose commands' lease moved to another replica writes no
// more host command states (issue 13): the store refuses the write under
// the old fence, the dispatcher drops the commands, and the agent's event
// is stored for the new driver instead of being applied.
func TestReplicaThatLostTheLeaseWritesNoHostState(t *testing.T) {
	ctx := context.Background()
	st := openSQLite(t)
	hc := store.HostCommand{ID: "cmd-1.web-1", FleetCommandID: "cmd-1", AgentID: "web-1", Kind: "pull", Spec: []byte{},
		State: int32(flotillav1.CommandState_COMMAND_STATE_PENDING), CreatedAt: time.Now(), ReleasedAt: time.Now(), Deadline: time.Now().Add(time.Hour)}
	if err := st.CreateFleetCommand(ctx, store.FleetCommand{ID: "cmd-1", Kind: "pull", Request: []byte{}, State: 1, CreatedAt: time.Now()}, []store.HostCommand{hc}); err != nil {
		t.Fatal(err)
	}
	held, err := st.AcquireLease(ctx, "command/cmd-1", "holder-a", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	a := newReplicas(t, st, 1, "web-1")[0]
	a.d.Track([]store.HostCommand{hc}, store.FenceOf(held))
	event := func(state flotillav1.CommandState, msg string) error {
		return a.d.OnEvent(ctx, "web-1", &flotillav1.CommandEvent{CommandId: hc.ID, State: state, Message: msg})
	}
	if err := event(flotillav1.CommandState_COMMAND_STATE_ACCEPTED, "accepted under the lease"); err != nil {
		t.Fatal(err)
	}
	if got, err := st.GetHostCommand(ctx, hc.ID); err != nil || got.Message != "accepted under the lease" {
		t.Fatalf("host command under the held lease = %+v, %v; want the event written", got, err)
	}

	// The lease moves to holder-b (A paused past its expiry, say).
	if err := st.ReleaseLease(ctx, held.Name, held.Holder, held.Token); err != nil {
		t.Fatal(err)
	}
	if _, err := st.AcquireLease(ctx, held.Name, "holder-b", time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := event(flotillav1.CommandState_COMMAND_STATE_SUCCEEDED, "late"); err != nil {
		t.Fatalf("event after the lease moved = %v; want it stored for the new driver", err)
	}
	if got, err := st.GetHostCommand(ctx, hc.ID); err != nil || got.Message != "accepted under the lease" || !got.FinishedAt.IsZero() {
		t.Errorf("host command after the lease moved = %+v, %v; want it unchanged", got, err)
	}
	if _, ok := a.d.Get(hc.ID); ok {
		t.Error("the dispatcher still holds the command of the lease it lost")
	}
	reports, err := st.ListCommandReportsFor(ctx, []string{hc.ID})
	if err != nil || len(reports) != 1 || reports[0].AgentID != "web-1" {
		t.Fatalf("reports for the new driver = %+v, %v; want the agent's late event", reports, err)
	}
}

// A watcher on a replica that does not drive the command sees every event
// its driver produced, in order, progress included, as a watcher on the
// driver does (issue 13: it saw the host rows' latest states, a collapsed
// history, and no progress).
func TestReplicaWatchSeesEveryEvent(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st := openSQLite(t)
	rs := newReplicas(t, st, 2, "web-1")
	a, b := rs[0], rs[1]
	sess := a.attach(t, "web-1")
	fc, err := a.m.Start(ctx, pullRequest("web-1"), "operator:test")
	if err != nil {
		t.Fatal(err)
	}
	hcID := fc.GetId() + ".web-1"
	awaitMessage(t, sess, "command", func(msg *flotillav1.ConnectResponse) bool { return msg.GetCommand().GetId() == hcID })

	type watched struct {
		events []string
		err    error
	}
	watch := func(r *replica, started chan<- struct{}) <-chan watched {
		out := make(chan watched, 1)
		go func() {
			var w watched
			w.err = r.m.Watch(ctx, fc.GetId(), func(msg *flotillav1.WatchCommandResponse) error {
				if ev := msg.GetEvent(); ev != nil {
					w.events = append(w.events, ev.GetEvent().GetState().String()+" "+ev.GetEvent().GetMessage())
				} else if len(w.events) == 0 && started != nil {
					close(started)
					started = nil
				}
				return nil
			})
			out <- w
		}()
		return out
	}
	aStarted, bStarted := make(chan struct{}), make(chan struct{})
	onA, onB := watch(a, aStarted), watch(b, bStarted)
	<-aStarted
	<-bStarted
	for _, ev := range []struct {
		state flotillav1.CommandState
		msg   string
	}{
		{flotillav1.CommandState_COMMAND_STATE_ACCEPTED, "accepted"},
		{flotillav1.CommandState_COMMAND_STATE_RUNNING, "pulling"},
		{flotillav1.CommandState_COMMAND_STATE_RUNNING, "layer 1/2"},
		{flotillav1.CommandState_COMMAND_STATE_RUNNING, "layer 2/2"},
		{flotillav1.CommandState_COMMAND_STATE_SUCCEEDED, "pulled"},
	} {
		if err := a.d.OnEvent(ctx, "web-1", &flotillav1.CommandEvent{CommandId: hcID, State: ev.state, Message: ev.msg}); err != nil {
			t.Fatal(err)
		}
	}
	var got [2]watched
	for i, ch := range []<-chan watched{onA, onB} {
		select {
		case got[i] = <-ch:
		case <-time.After(30 * time.Second):
			t.Fatalf("watch %d did not end with the command", i)
		}
		if got[i].err != nil {
			t.Fatalf("watch %d: %v", i, got[i].err)
		}
	}
	want := []string{"COMMAND_STATE_ACCEPTED accepted", "COMMAND_STATE_RUNNING pulling", "COMMAND_STATE_RUNNING layer 1/2",
		"COMMAND_STATE_RUNNING layer 2/2", "COMMAND_STATE_SUCCEEDED pulled"}
	if !slices.Equal(got[0].events, want) {
		t.Errorf("watch on the driver saw %q, want %q", got[0].events, want)
	}
	if !slices.Equal(got[1].events, got[0].events) {
		t.Errorf("watch on the other replica saw %q, want what the driver's saw: %q", got[1].events, got[0].events)
	}
}

// A released command that a dispatcher starts holding after its agent
// attached is sent to the agent then, with its requested cancel. This is
// a rollout taken over from a replica that stopped between storing a
// release and sending it: the agent attached to the new driver before the
// resumed rollout read the command from the store, so the attach found
// nothing to send, and the relay leaves alone a command held here. (Seen
// in CI: a pre-pull waited for its deadline after a crash, 1 run in ~40.)
func TestHeldAfterAttachReachesTheAgent(t *testing.T) {
	ctx := context.Background()
	st := openSQLite(t)
	reg, err := fleet.New(fleet.Config{Store: st, Logger: zap.NewNop(), LostAfter: time.Minute, FlushInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	reg.Add(store.Agent{ID: "web-1", State: store.AgentDisconnected, RegisteredAt: time.Now()})
	// No Follower: it stands for a relay that did not deliver the command.
	d, err := commands.NewDispatcher(commands.DispatcherConfig{Store: st, Registry: reg, Replica: true})
	if err != nil {
		t.Fatal(err)
	}
	r := &replica{reg: reg, d: d}
	sess := r.attach(t, "web-1")

	now := time.Now()
	hcs := []store.HostCommand{
		{ID: "ro-1.web-1.pull", AgentID: "web-1", Kind: "pull", Spec: []byte{},
			State: int32(flotillav1.CommandState_COMMAND_STATE_PENDING), Message: "sent to the agent",
			CreatedAt: now, ReleasedAt: now, Deadline: now.Add(time.Minute)},
		{ID: "ro-1.web-1.drain", AgentID: "web-1", Kind: "drain", Spec: []byte{},
			State: int32(flotillav1.CommandState_COMMAND_STATE_ACCEPTED), Message: "accepted",
			CreatedAt: now, ReleasedAt: now, Deadline: now.Add(time.Minute), CancelReason: "rollout aborted"},
		{ID: "ro-1.web-1.restart", AgentID: "web-1", Kind: "restart", Spec: []byte{},
			State: int32(flotillav1.CommandState_COMMAND_STATE_PENDING), Message: "queued", CreatedAt: now},
	}
	if err := st.CreateHostCommands(ctx, hcs); err != nil {
		t.Fatal(err)
	}
	d.Track(hcs, nil)

	var sent, cancelled []string
	for _, msg := range sess.Take() {
		if id := msg.GetCommand().GetId(); id != "" {
			sent = append(sent, id)
		}
		if id := msg.GetCancel().GetCommandId(); id != "" {
			cancelled = append(cancelled, id)
		}
	}
	slices.Sort(sent)
	if want := []string{"ro-1.web-1.drain", "ro-1.web-1.pull"}; !slices.Equal(sent, want) {
		t.Errorf("commands sent to the attached agent: %v, want the released ones %v", sent, want)
	}
	if want := []string{"ro-1.web-1.drain"}; !slices.Equal(cancelled, want) {
		t.Errorf("cancels sent: %v, want %v", cancelled, want)
	}
}
