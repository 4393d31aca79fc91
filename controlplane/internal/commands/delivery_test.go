package commands

import (
	"context"
	"slices"
	"testing"
	"time"

	flotillav1 "flotilla.dev/gen/flotilla/v1"
	"flotilla.dev/pkg/command"
)

// sessionLog returns what was queued to agent's session, as "command c1"
// or "cancel c1: reason".
func (e *testEnv) sessionLog(agent string) []string {
	var out []string
	for _, msg := range e.sessions[agent].Take() {
		switch {
		case msg.GetCommand() != nil:
			out = append(out, "command "+msg.GetCommand().GetId())
		case msg.GetCancel() != nil:
			out = append(out, "cancel "+msg.GetCancel().GetCommandId()+": "+msg.GetCancel().GetReason())
		}
	}
	return out
}

// A cancel asked while the agent is away reaches it after the command when
// it reconnects; a command its agent never acknowledged is cancelled at
// once, and the reconnect resends only what is still active.
func TestReconnectResendsActiveCommandsAndTheirCancels(t *testing.T) {
	ctx := context.Background()
	e, _ := releasedEnv(t, 1)
	e.queuedCommand(t, "c2", "web-1")
	if err := e.d.Release(ctx, []string{"c2"}, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := e.d.OnEvent(ctx, "web-1", event("c1", stateAccepted)); err != nil {
		t.Fatal(err)
	}
	if got := e.sessionLog("web-1"); !slices.Equal(got, []string{"command c1", "command c2"}) {
		t.Fatalf("web-1 got %v, want c1 and c2", got)
	}
	e.reg.Detach(e.sessions["web-1"], "gone")
	if err := e.d.Cancel(ctx, []string{"c1", "c2"}, "operator"); err != nil {
		t.Fatal(err)
	}
	if hc, ok := e.d.Get("c1"); !ok || flotillav1.CommandState(hc.State) != stateAccepted {
		t.Errorf("c1 after the cancel: %s (active %t), want ACCEPTED until its agent answers", command.StateName(flotillav1.CommandState(hc.State)), ok)
	}
	if hc := e.st.stored(t, "c2"); flotillav1.CommandState(hc.State) != stateCancelled {
		t.Errorf("c2 stored as %s, want CANCELLED (never acknowledged)", command.StateName(flotillav1.CommandState(hc.State)))
	}

	s, err := e.reg.Attach("web-1", &flotillav1.Hello{AgentId: "web-1"}, "10.0.0.1:2")
	if err != nil {
		t.Fatal(err)
	}
	e.sessions["web-1"] = s
	e.d.OnConnect("web-1")
	if got, want := e.sessionLog("web-1"), []string{"command c1", "cancel c1: operator"}; !slices.Equal(got, want) {
		t.Errorf("after reconnecting web-1 got %v, want %v", got, want)
	}
}

// A sweep ends every overdue command in one write: TIMED_OUT, with a
// cancel to an agent that is connected, and a message saying whether the
// agent was away.
func TestSweepEndsOverdueCommandsInOneWrite(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	e := newTestEnv(t, "web-1", "web-2")
	e.d.cfg.Now = func() time.Time { return now }
	e.queuedCommand(t, "c1", "web-1")
	e.queuedCommand(t, "c2", "web-2")
	e.queuedCommand(t, "c3", "web-1")
	if err := e.d.Release(ctx, []string{"c1", "c2"}, time.Minute); err != nil {
		t.Fatal(err)
	}
	e.reg.Detach(e.sessions["web-2"], "gone")
	e.sessionLog("web-1")
	writes := len(e.st.updateCalls())

	now = now.Add(time.Minute + DefaultDeadlineGrace) // at the deadline plus grace: not yet
	e.d.Sweep(ctx)
	if n := len(e.st.updateCalls()); n != writes {
		t.Fatalf("a sweep at the deadline plus grace wrote %d times, want none", n-writes)
	}
	now = now.Add(time.Millisecond)
	e.d.Sweep(ctx)
	calls := e.st.updateCalls()
	if got := callIDs(calls[writes:]); !slices.EqualFunc(got, [][]string{{"c1", "c2"}}, slices.Equal) {
		t.Fatalf("sweep wrote %v, want c1 and c2 in one write (c3 was never released)", got)
	}
	for id, want := range map[string]string{
		"c1": "no result from the agent by the deadline",
		"c2": "the agent was offline until the deadline; the command never ran",
	} {
		hc := e.st.stored(t, id)
		if flotillav1.CommandState(hc.State) != flotillav1.CommandState_COMMAND_STATE_TIMED_OUT || hc.Message != want {
			t.Errorf("%s stored as %s %q, want TIMED_OUT %q", id, command.StateName(flotillav1.CommandState(hc.State)), hc.Message, want)
		}
	}
	if got := e.sessionLog("web-1"); !slices.Equal(got, []string{"cancel c1: deadline passed"}) {
		t.Errorf("web-1 got %v, want the cancel of c1", got)
	}
	if _, ok := e.d.Get("c3"); !ok {
		t.Error("the queued c3 was swept")
	}
}
