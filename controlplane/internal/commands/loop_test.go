package commands

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	flotillav1 "flotilla.dev/gen/flotilla/v1"
	"flotilla.dev/pkg/command"

	"flotilla.dev/controlplane/internal/fault"
	"flotilla.dev/controlplane/internal/store"
)

const (
	statePending   = flotillav1.CommandState_COMMAND_STATE_PENDING
	stateAccepted  = flotillav1.CommandState_COMMAND_STATE_ACCEPTED
	stateSucceeded = flotillav1.CommandState_COMMAND_STATE_SUCCEEDED
	stateFailed    = flotillav1.CommandState_COMMAND_STATE_FAILED
	stateCancelled = flotillav1.CommandState_COMMAND_STATE_CANCELLED
	stateSkipped   = flotillav1.CommandState_COMMAND_STATE_SKIPPED
)

func event(id string, st flotillav1.CommandState) *flotillav1.CommandEvent {
	return &flotillav1.CommandEvent{CommandId: id, State: st, Message: command.StateName(st), At: timestamppb.Now()}
}

// callIDs returns the IDs of each UpdateHostCommands call, sorted within
// a call (a batch's order is the order its writers queued in).
func callIDs(calls [][]store.HostCommand) [][]string {
	out := make([][]string, len(calls))
	for i, c := range calls {
		for _, h := range c {
			out[i] = append(out[i], h.ID)
		}
		slices.Sort(out[i])
	}
	return out
}

// onEventAsync sends an agent's event from its own goroutine, as a stream
// does, and returns where OnEvent's result arrives.
func onEventAsync(e *testEnv, agent, id string, st flotillav1.CommandState) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- e.d.OnEvent(context.Background(), agent, event(id, st)) }()
	return ch
}

// seenOrder returns the command ID and state of every update listeners
// saw, in order.
func (e *testEnv) seenOrder() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]string, len(e.updates))
	for i, u := range e.updates {
		out[i] = u.Command.ID + ":" + command.StateName(flotillav1.CommandState(u.Command.State))
	}
	return out
}

// releasedEnv is a testEnv with one released command per agent, c1 on
// web-1 and so on.
func releasedEnv(t *testing.T, n int) (*testEnv, []string) {
	t.Helper()
	var agents, ids []string
	for i := 1; i <= n; i++ {
		agents, ids = append(agents, fmt.Sprintf("web-%d", i)), append(ids, fmt.Sprintf("c%d", i))
	}
	e := newTestEnv(t, agents...)
	for i, id := range ids {
		e.queuedCommand(t, id, agents[i])
	}
	if err := e.d.Release(context.Background(), ids, time.Minute); err != nil {
		t.Fatal(err)
	}
	return e, ids
}

// The events that queue while the dispatcher's owner is storing a turn
// are stored together in the next turn, in one write, and listeners hear
// of them in the order they were queued.
func TestEventsQueuedDuringAWriteAreStoredInOneTurnAndNotifiedInOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e, _ := releasedEnv(t, 4)
		release := e.st.holdNext()
		first := onEventAsync(e, "web-4", "c4", stateAccepted)
		synctest.Wait() // c4's turn is being stored
		var queued []<-chan error
		for _, a := range []struct{ agent, id string }{{"web-2", "c2"}, {"web-1", "c1"}, {"web-3", "c3"}} {
			queued = append(queued, onEventAsync(e, a.agent, a.id, stateAccepted))
			synctest.Wait() // queued in this order
		}
		if got := callIDs(e.st.updateCalls()); len(got) != 2 {
			t.Fatalf("while c4 is stored, the store saw %v, want the release and c4's write", got)
		}
		close(release)
		for _, ch := range append(queued, first) {
			if err := <-ch; err != nil {
				t.Fatalf("OnEvent: %v", err)
			}
		}
		want := [][]string{{"c1", "c2", "c3", "c4"}, {"c4"}, {"c1", "c2", "c3"}}
		if got := callIDs(e.st.updateCalls()); !slices.EqualFunc(got, want, slices.Equal) {
			t.Errorf("store writes = %v, want %v", got, want)
		}
		wantSeen := []string{"c1:pending", "c2:pending", "c3:pending", "c4:pending",
			"c4:accepted", "c2:accepted", "c1:accepted", "c3:accepted"}
		if got := e.seenOrder(); !slices.Equal(got, wantSeen) {
			t.Errorf("listeners saw %v, want %v", got, wantSeen)
		}
	})
}

// A second event of a command in the same turn waits for the next one: its
// change is computed from the stored state the first one leaves, while
// the other commands' events of the turn are stored together.
func TestSecondEventOfACommandWaitsForTheNextTurn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e, _ := releasedEnv(t, 3)
		release := e.st.holdNext()
		first := onEventAsync(e, "web-3", "c3", stateAccepted)
		synctest.Wait()
		var queued []<-chan error
		for _, ev := range []struct {
			agent, id string
			st        flotillav1.CommandState
		}{{"web-1", "c1", stateAccepted}, {"web-1", "c1", stateSucceeded}, {"web-2", "c2", stateAccepted}} {
			queued = append(queued, onEventAsync(e, ev.agent, ev.id, ev.st))
			synctest.Wait()
		}
		close(release)
		for _, ch := range append(queued, first) {
			if err := <-ch; err != nil {
				t.Fatalf("OnEvent: %v", err)
			}
		}
		want := [][]string{{"c1", "c2", "c3"}, {"c3"}, {"c1", "c2"}, {"c1"}}
		if got := callIDs(e.st.updateCalls()); !slices.EqualFunc(got, want, slices.Equal) {
			t.Errorf("store writes = %v, want %v", got, want)
		}
		if got := e.seenStates("c1"); !slices.Equal(got, []flotillav1.CommandState{statePending, stateAccepted, stateSucceeded}) {
			t.Errorf("listeners saw %v for c1, want pending, accepted, succeeded", got)
		}
		if hc := e.st.stored(t, "c1"); flotillav1.CommandState(hc.State) != stateSucceeded {
			t.Errorf("c1 stored as %s, want SUCCEEDED", command.StateName(flotillav1.CommandState(hc.State)))
		}
	})
}

// A turn whose write fails fails every event it held; none is applied or
// reported to listeners, and each caller hears of it (its agent resends
// the event after reconnecting), so nothing is lost.
func TestFailedTurnFailsEveryEventItHeldAndLosesNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e, ids := releasedEnv(t, 4)
		ids = ids[:3]
		e.st.mu.Lock()
		e.st.fail = func(call int) bool { return call == 3 } // the turn of c1-c3
		e.st.mu.Unlock()
		release := e.st.holdNext()
		first := onEventAsync(e, "web-4", "c4", stateAccepted)
		synctest.Wait()
		var queued []<-chan error
		for i, id := range ids {
			queued = append(queued, onEventAsync(e, fmt.Sprintf("web-%d", i+1), id, stateAccepted))
		}
		synctest.Wait()
		close(release)
		if err := <-first; err != nil {
			t.Fatalf("c4's event: %v", err)
		}
		for i, ch := range queued {
			if err := <-ch; !errors.Is(err, errStoreDown) {
				t.Errorf("%s: OnEvent = %v, want the store's failure", ids[i], err)
			}
		}
		wantState := map[string]flotillav1.CommandState{"c1": statePending, "c2": statePending, "c3": statePending, "c4": stateAccepted}
		for id, want := range wantState {
			if hc, _ := e.d.Get(id); flotillav1.CommandState(hc.State) != want {
				t.Errorf("%s after the failed turn: %s, want %s", id, command.StateName(flotillav1.CommandState(hc.State)), command.StateName(want))
			}
		}
		seen := len(e.seenOrder())
		for i, id := range ids {
			if err := e.d.OnEvent(context.Background(), fmt.Sprintf("web-%d", i+1), event(id, stateSucceeded)); err != nil {
				t.Fatalf("resent %s: %v", id, err)
			}
			if hc := e.st.stored(t, id); flotillav1.CommandState(hc.State) != stateSucceeded {
				t.Errorf("%s stored as %s after the resend, want SUCCEEDED", id, command.StateName(flotillav1.CommandState(hc.State)))
			}
		}
		if got := e.seenOrder()[seen:]; !slices.Equal(got, []string{"c1:succeeded", "c2:succeeded", "c3:succeeded"}) {
			t.Errorf("after the failure listeners saw %v, want each resent outcome once", got)
		}
	})
}

// An agent's next event for a command waits until its previous change is
// stored and applied: the dispatcher never computes a change from a state
// the store does not hold yet, and never reports one before it is stored.
func TestEventWaitsForThePreviousChangeOfItsCommand(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e, _ := releasedEnv(t, 1)
		release := e.st.holdNext()
		accepted := onEventAsync(e, "web-1", "c1", stateAccepted)
		synctest.Wait() // ACCEPTED is being stored
		succeeded := onEventAsync(e, "web-1", "c1", stateSucceeded)
		synctest.Wait()

		if n := len(e.st.updateCalls()); n != 2 {
			t.Errorf("SUCCEEDED was given to the store before ACCEPTED was stored (%d writes)", n)
		}
		if got := e.seenStates("c1"); !slices.Equal(got, []flotillav1.CommandState{statePending}) {
			t.Errorf("listeners saw %v before ACCEPTED was stored, want only the release", got)
		}

		close(release)
		for _, ch := range []<-chan error{accepted, succeeded} {
			if err := <-ch; err != nil {
				t.Fatalf("OnEvent: %v", err)
			}
		}
		calls := e.st.updateCalls()
		var stored []flotillav1.CommandState
		for _, c := range calls[1:] {
			stored = append(stored, flotillav1.CommandState(c[0].State))
		}
		if want := []flotillav1.CommandState{stateAccepted, stateSucceeded}; !slices.Equal(stored, want) {
			t.Errorf("stored states after the release = %v, want %v", stored, want)
		}
		if want := []flotillav1.CommandState{statePending, stateAccepted, stateSucceeded}; !slices.Equal(e.seenStates("c1"), want) {
			t.Errorf("listeners saw %v, want %v", e.seenStates("c1"), want)
		}
		if _, active := e.d.Get("c1"); active {
			t.Error("c1 is still active after SUCCEEDED")
		}
	})
}

// A change whose write fails is not applied: the agent's resend (after it
// reconnects and reports its journal) applies it again.
func TestFailedEventWriteChangesNothing(t *testing.T) {
	ctx := context.Background()
	e := newTestEnv(t, "web-1")
	e.queuedCommand(t, "c1", "web-1")
	if err := e.d.Release(ctx, []string{"c1"}, time.Minute); err != nil {
		t.Fatal(err)
	}
	e.st.mu.Lock()
	e.st.fail = func(call int) bool { return call == 2 }
	e.st.mu.Unlock()
	if err := e.d.OnEvent(ctx, "web-1", event("c1", stateAccepted)); !errors.Is(err, errStoreDown) {
		t.Fatalf("OnEvent with the store down = %v, want its error", err)
	}
	if hc, _ := e.d.Get("c1"); flotillav1.CommandState(hc.State) != statePending {
		t.Errorf("after a failed write, Get reports %s, want PENDING", command.StateName(flotillav1.CommandState(hc.State)))
	}
	if got := e.seenStates("c1"); !slices.Equal(got, []flotillav1.CommandState{statePending}) {
		t.Errorf("listeners saw %v, want only the release", got)
	}
	if err := e.d.OnEvent(ctx, "web-1", event("c1", stateAccepted)); err != nil {
		t.Fatalf("resent OnEvent: %v", err)
	}
	if hc := e.st.stored(t, "c1"); flotillav1.CommandState(hc.State) != stateAccepted {
		t.Errorf("stored state = %s, want ACCEPTED", command.StateName(flotillav1.CommandState(hc.State)))
	}
}

// Finish stores all its commands in one transaction: all change or none.
func TestFinishStoresEveryCommandInOneWrite(t *testing.T) {
	ctx := context.Background()
	agents := []string{"web-1", "web-2", "web-3"}
	e := newTestEnv(t, agents...)
	ids := []string{"c1", "c2", "c3"}
	for i, id := range ids {
		e.queuedCommand(t, id, agents[i])
	}
	if err := e.d.Release(ctx, ids, time.Minute); err != nil {
		t.Fatal(err)
	}
	e.st.mu.Lock()
	e.st.fail = func(call int) bool { return call == 2 }
	e.st.mu.Unlock()
	if err := e.d.Finish(ctx, ids, stateCancelled, "test"); !errors.Is(err, errStoreDown) {
		t.Fatalf("Finish with the store down = %v, want its error", err)
	}
	for _, id := range ids {
		if hc, ok := e.d.Get(id); !ok || flotillav1.CommandState(hc.State) != statePending {
			t.Errorf("%s after a failed Finish: %s (active %t), want PENDING", id, command.StateName(flotillav1.CommandState(hc.State)), ok)
		}
	}
	// A repeated ID is finished once.
	if err := e.d.Finish(ctx, append(ids, "c1"), stateCancelled, "test"); err != nil {
		t.Fatalf("Finish: %v", err)
	}
	calls := callIDs(e.st.updateCalls())
	if got := calls[len(calls)-1]; !slices.Equal(got, ids) {
		t.Errorf("Finish's write = %v, want %v in one transaction", got, ids)
	}
	for _, id := range ids {
		if want := []flotillav1.CommandState{statePending, stateCancelled}; !slices.Equal(e.seenStates(id), want) {
			t.Errorf("listeners saw %v for %s, want %v", e.seenStates(id), id, want)
		}
	}
}

func countLimit(n int32) *flotillav1.Limit {
	return &flotillav1.Limit{Kind: &flotillav1.Limit_Count{Count: n}}
}

// Start stores the hosts it can start at once already released, sends them
// without a second write, and releases the others as slots free up.
func TestStartStoresTheFirstHostsReleased(t *testing.T) {
	ctx := context.Background()
	agents := []string{"web-1", "web-2", "web-3", "web-4"}
	e := newTestEnv(t, agents...)
	e.reg.Detach(e.sessions["web-2"], "gone")
	fc, err := e.m.Start(ctx, &flotillav1.RunCommandRequest{AgentIds: agents, MaxConcurrency: countLimit(2),
		Spec: &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Pull{Pull: &flotillav1.PullCommand{Image: "registry.example/app:v2"}}}}, "operator:test")
	if err != nil {
		t.Fatal(err)
	}
	id := func(agent string) string { return fc.GetId() + "." + agent }
	created := e.st.creates[0]
	for i, hc := range created {
		released := !hc.ReleasedAt.IsZero()
		if released != (i < 2) {
			t.Errorf("%s stored released=%t, want %t", hc.ID, released, i < 2)
		}
		if released && (!hc.ReleasedAt.Equal(hc.CreatedAt) || hc.Deadline.Sub(hc.ReleasedAt) != DefaultTimeout(command.KindPull)) {
			t.Errorf("%s released at %s with deadline %s, want at creation (%s) with the default timeout", hc.ID, hc.ReleasedAt, hc.Deadline, hc.CreatedAt)
		}
	}
	if got := created[0].Message; got != "sent to the agent" {
		t.Errorf("web-1's message = %q", got)
	}
	if got := created[1].Message; !strings.HasPrefix(got, "agent web-2 is offline; the command waits for it until ") {
		t.Errorf("web-2's message = %q, want the offline one", got)
	}
	if got := created[2].Message; got != "queued: waiting for a concurrency slot" {
		t.Errorf("web-3's message = %q", got)
	}
	if calls := e.st.updateCalls(); len(calls) != 0 {
		t.Errorf("Start wrote %v after creating the command, want no second write", callIDs(calls))
	}
	if got := e.sentCommands("web-1"); !slices.Equal(got, []string{id("web-1")}) {
		t.Errorf("web-1 got %v", got)
	}
	if got := e.sentCommands("web-3"); len(got) != 0 {
		t.Errorf("queued web-3 got %v", got)
	}
	if got := e.seenStates(id("web-1")); !slices.Equal(got, []flotillav1.CommandState{statePending}) {
		t.Errorf("listeners saw %v for web-1, want its release", got)
	}

	for _, st := range []flotillav1.CommandState{stateAccepted, stateSucceeded} {
		if err := e.d.OnEvent(ctx, "web-1", event(id("web-1"), st)); err != nil {
			t.Fatal(err)
		}
	}
	if got := e.sentCommands("web-3"); !slices.Equal(got, []string{id("web-3")}) {
		t.Errorf("after web-1 finished, web-3 got %v, want its command", got)
	}
	if got := e.sentCommands("web-4"); len(got) != 0 {
		t.Errorf("web-4 got %v while web-2 and web-3 hold the two slots", got)
	}
}

// At max_errors the queued hosts are skipped in one write, once.
func TestMaxErrorsSkipsTheQueueInOneWrite(t *testing.T) {
	ctx := context.Background()
	agents := []string{"web-1", "web-2", "web-3", "web-4", "web-5"}
	e := newTestEnv(t, agents...)
	fc, err := e.m.Start(ctx, &flotillav1.RunCommandRequest{AgentIds: agents, MaxConcurrency: countLimit(1), MaxErrors: countLimit(1),
		Spec: &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Pull{Pull: &flotillav1.PullCommand{Image: "registry.example/app:v2"}}}}, "operator:test")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.d.OnEvent(ctx, "web-1", event(fc.GetId()+".web-1", stateFailed)); err != nil {
		t.Fatal(err)
	}
	calls := e.st.updateCalls()
	if len(calls) != 2 {
		t.Fatalf("store writes = %v, want web-1's failure, then one write skipping the rest", callIDs(calls))
	}
	for _, hc := range calls[1] {
		if flotillav1.CommandState(hc.State) != stateSkipped {
			t.Errorf("%s stored as %s, want SKIPPED", hc.ID, command.StateName(flotillav1.CommandState(hc.State)))
		}
	}
	if len(calls[1]) != 4 {
		t.Errorf("skipped %d hosts, want 4", len(calls[1]))
	}
	got, err := e.m.Get(ctx, fc.GetId(), flotillav1.CommandView_COMMAND_VIEW_FULL)
	if err != nil {
		t.Fatal(err)
	}
	if got.GetState() != flotillav1.FleetCommandState_FLEET_COMMAND_STATE_FAILED ||
		got.GetSummary()["failed"] != 1 || got.GetSummary()["skipped"] != 4 {
		t.Errorf("fleet command %s with %v, want FAILED with 1 failed and 4 skipped", got.GetState(), got.GetSummary())
	}
	if _, err := e.m.Cancel(ctx, fc.GetId(), ""); !errors.Is(err, fault.ErrPrecondition) {
		t.Errorf("Cancel of the finished command = %v, want FailedPrecondition", err)
	}
}

// Many agents answering at once, with sweeps and reads in between: every
// command's changes reach the store and the listeners once each, in the
// order its agent sent them.
func TestConcurrentAgentsKeepEachCommandsOrder(t *testing.T) {
	const n = 64
	e, ids := releasedEnv(t, n)
	ctx, stop := context.WithCancel(context.Background())
	sweeps := make(chan struct{})
	go func() {
		defer close(sweeps)
		for ctx.Err() == nil {
			e.d.Sweep(ctx)
			e.d.Get(ids[0])
		}
	}()
	errs := make(chan error, n)
	for i, id := range ids {
		go func() {
			agent := fmt.Sprintf("web-%d", i+1)
			for _, st := range []flotillav1.CommandState{stateAccepted, flotillav1.CommandState_COMMAND_STATE_RUNNING, flotillav1.CommandState_COMMAND_STATE_RUNNING, stateSucceeded} {
				if err := e.d.OnEvent(context.Background(), agent, event(id, st)); err != nil {
					errs <- fmt.Errorf("%s %s: %w", id, command.StateName(st), err)
					return
				}
			}
			errs <- nil
		}()
	}
	for range ids {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	stop()
	<-sweeps
	want := []flotillav1.CommandState{statePending, stateAccepted, flotillav1.CommandState_COMMAND_STATE_RUNNING,
		flotillav1.CommandState_COMMAND_STATE_RUNNING, stateSucceeded}
	for _, id := range ids {
		if got := e.seenStates(id); !slices.Equal(got, want) {
			t.Errorf("listeners saw %v for %s, want %v", got, id, want)
		}
		if hc := e.st.stored(t, id); flotillav1.CommandState(hc.State) != stateSucceeded {
			t.Errorf("%s stored as %s, want SUCCEEDED", id, command.StateName(flotillav1.CommandState(hc.State)))
		}
	}
	stored := 0
	for _, c := range e.st.updateCalls()[1:] {
		stored += len(c)
	}
	if want := 3 * n; stored != want {
		t.Errorf("%d command changes stored, want %d (accepted, running, succeeded; progress is not stored)", stored, want)
	}
}
