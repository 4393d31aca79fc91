package commands

import (
	"testing"
	"time"

	"flotilla.dev/controlplane/internal/store"
	flotillav1 "flotilla.dev/gen/flotilla/v1"
)

// A host whose agent reports SUCCEEDED straight after ACCEPTED (its RUNNING
// event lost to a reconnect, say) still gets a start time; one rejected
// never started.
func TestNextStartTime(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	accepted := &store.HostCommand{ID: "c1", State: int32(flotillav1.CommandState_COMMAND_STATE_ACCEPTED)}
	for _, tc := range []struct {
		to          flotillav1.CommandState
		wantStarted bool
	}{
		{flotillav1.CommandState_COMMAND_STATE_RUNNING, true},
		{flotillav1.CommandState_COMMAND_STATE_SUCCEEDED, true},
		{flotillav1.CommandState_COMMAND_STATE_REJECTED, false},
	} {
		c, changed, err := next(accepted, &flotillav1.CommandEvent{CommandId: "c1", State: tc.to}, now)
		if err != nil || !changed {
			t.Fatalf("%s: changed=%v err=%v", tc.to, changed, err)
		}
		if got := c.next.StartedAt.Equal(now); got != tc.wantStarted {
			t.Errorf("%s: StartedAt = %v, want set=%v", tc.to, c.next.StartedAt, tc.wantStarted)
		}
	}
	running := &store.HostCommand{ID: "c1", State: int32(flotillav1.CommandState_COMMAND_STATE_RUNNING), StartedAt: now.Add(-time.Second)}
	c, _, _ := next(running, &flotillav1.CommandEvent{CommandId: "c1", State: flotillav1.CommandState_COMMAND_STATE_SUCCEEDED}, now)
	if !c.next.StartedAt.Equal(now.Add(-time.Second)) {
		t.Errorf("SUCCEEDED after RUNNING moved StartedAt to %v", c.next.StartedAt)
	}
}
