package commands

import (
	"slices"
	"testing"

	flotillav1 "flotilla.dev/gen/flotilla/v1"
	"flotilla.dev/pkg/command"
)

func TestFailedCountsAgainstMaxErrors(t *testing.T) {
	want := []flotillav1.CommandState{
		flotillav1.CommandState_COMMAND_STATE_FAILED, flotillav1.CommandState_COMMAND_STATE_TIMED_OUT,
		flotillav1.CommandState_COMMAND_STATE_REJECTED, flotillav1.CommandState_COMMAND_STATE_CANCELLED,
	}
	for v := range flotillav1.CommandState_name {
		s := flotillav1.CommandState(v)
		if got := failed(s); got != slices.Contains(want, s) {
			t.Errorf("failed(%v) = %v", s, got)
		}
		if failed(s) && !command.Terminal(s) {
			t.Errorf("%v counts as a failure but is not terminal", s)
		}
	}
}
