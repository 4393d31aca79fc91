package commands

import (
	"testing"
	"testing/synctest"
)

// A command forgotten (its work moved to another replica) in the turn that
// also holds an event about it: the event waits for the next turn and
// finds the command gone, rather than be applied to it once it is.
func TestEventQueuedAfterForgetInOneTurnFindsTheCommandGone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e, _ := releasedEnv(t, 2)
		release := e.st.holdNext()
		first := onEventAsync(e, "web-2", "c2", stateAccepted)
		synctest.Wait() // c2's turn is being stored
		forgot := make(chan struct{})
		go func() { e.d.Forget([]string{"c1"}); close(forgot) }()
		synctest.Wait() // queued first
		ev := onEventAsync(e, "web-1", "c1", stateAccepted)
		synctest.Wait()
		close(release)
		for _, ch := range []<-chan error{first, ev} {
			if err := <-ch; err != nil {
				t.Fatalf("OnEvent: %v", err)
			}
		}
		<-forgot
		if _, ok := e.d.Get("c1"); ok {
			t.Error("c1 still held after Forget")
		}
		if hc := e.st.stored(t, "c1"); hc.State != int32(statePending) {
			t.Errorf("c1 stored in state %d after the forget, want it untouched (pending)", hc.State)
		}
	})
}
