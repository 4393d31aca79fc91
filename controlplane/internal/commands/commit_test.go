package commands

import (
	"context"
	"errors"
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

// writeAsync starts a committer write of one command and returns where
// its result arrives.
func writeAsync(c *committer, id string) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- c.write(context.Background(), []store.HostCommand{{ID: id}}) }()
	return ch
}

func TestCommitterBatchesWritesMadeDuringAWrite(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newMemStore()
		c := &committer{store: st}
		release := st.holdNext()
		a := writeAsync(c, "a")
		synctest.Wait() // a's transaction is in progress
		b, cc := writeAsync(c, "b"), writeAsync(c, "c")
		synctest.Wait() // b and c wait for it
		if got := callIDs(st.updateCalls()); !slices.EqualFunc(got, [][]string{{"a"}}, slices.Equal) {
			t.Fatalf("while a is written, the store saw %v, want only a's write", got)
		}
		close(release)
		for _, ch := range []<-chan error{a, b, cc} {
			if err := <-ch; err != nil {
				t.Fatalf("write: %v", err)
			}
		}
		want := [][]string{{"a"}, {"b", "c"}}
		if got := callIDs(st.updateCalls()); !slices.EqualFunc(got, want, slices.Equal) {
			t.Errorf("store writes = %v, want %v", got, want)
		}
	})
}

func TestCommitterFailureFailsTheWholeBatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newMemStore()
		st.fail = func(call int) bool { return call == 2 }
		c := &committer{store: st}
		release := st.holdNext()
		a := writeAsync(c, "a")
		synctest.Wait()
		b, cc := writeAsync(c, "b"), writeAsync(c, "c")
		synctest.Wait()
		close(release)
		if err := <-a; err != nil {
			t.Errorf("a: %v, want stored", err)
		}
		for name, ch := range map[string]<-chan error{"b": b, "c": cc} {
			if err := <-ch; !errors.Is(err, errStoreDown) {
				t.Errorf("%s: %v, want the batch's failure", name, err)
			}
		}
		for _, id := range []string{"b", "c"} {
			if _, err := st.GetHostCommand(context.Background(), id); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("%s was stored by a failed batch", id)
			}
		}
	})
}

func TestCommitterDoneContextWritesNothing(t *testing.T) {
	st := newMemStore()
	c := &committer{store: st}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.write(ctx, []store.HostCommand{{ID: "a"}}); !errors.Is(err, context.Canceled) {
		t.Errorf("write with a cancelled context = %v, want context.Canceled", err)
	}
	if calls := st.updateCalls(); len(calls) != 0 {
		t.Errorf("store writes = %v, want none", callIDs(calls))
	}
}

// An agent's next event for a command waits until its previous change is
// stored and applied: the dispatcher never computes a change from a state
// the store does not hold yet, and never reports one before it is stored.
func TestEventWaitsForThePreviousChangeOfItsCommand(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		e := newTestEnv(t, "web-1")
		e.queuedCommand(t, "c1", "web-1")
		if err := e.d.Release(ctx, []string{"c1"}, time.Minute); err != nil {
			t.Fatal(err)
		}
		release := e.st.holdNext()
		accepted, succeeded := make(chan error, 1), make(chan error, 1)
		go func() { accepted <- e.d.OnEvent(ctx, "web-1", event("c1", stateAccepted)) }()
		synctest.Wait() // ACCEPTED is being stored
		go func() { succeeded <- e.d.OnEvent(ctx, "web-1", event("c1", stateSucceeded)) }()
		synctest.Wait()

		if hc, _ := e.d.Get("c1"); flotillav1.CommandState(hc.State) != statePending {
			t.Errorf("while ACCEPTED is being stored, Get reports %s, want PENDING (what the store holds)", command.StateName(flotillav1.CommandState(hc.State)))
		}
		e.d.commits.mu.Lock()
		queued := len(e.d.commits.queue)
		e.d.commits.mu.Unlock()
		if queued != 0 {
			t.Errorf("SUCCEEDED was queued for the store before ACCEPTED was stored")
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

// Run stores the hosts it can start at once already released, sends them
// without a second write, and releases the others as slots free up.
func TestRunStoresTheFirstHostsReleased(t *testing.T) {
	ctx := context.Background()
	agents := []string{"web-1", "web-2", "web-3", "web-4"}
	e := newTestEnv(t, agents...)
	e.reg.Detach(e.sessions["web-2"], "gone")
	fc, err := e.m.Run(ctx, &flotillav1.RunCommandRequest{AgentIds: agents, MaxConcurrency: countLimit(2),
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
		t.Errorf("Run wrote %v after creating the command, want no second write", callIDs(calls))
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
	fc, err := e.m.Run(ctx, &flotillav1.RunCommandRequest{AgentIds: agents, MaxConcurrency: countLimit(1), MaxErrors: countLimit(1),
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
