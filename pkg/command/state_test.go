package command

import (
	"slices"
	"strings"
	"testing"

	flotillav1 "flotilla.dev/gen/flotilla/v1"
)

// allStates is every CommandState the API defines.
func allStates() []flotillav1.CommandState {
	var out []flotillav1.CommandState
	for v := range flotillav1.CommandState_name {
		out = append(out, flotillav1.CommandState(v))
	}
	slices.Sort(out)
	return out
}

var terminalStates = []flotillav1.CommandState{
	flotillav1.CommandState_COMMAND_STATE_SUCCEEDED, flotillav1.CommandState_COMMAND_STATE_FAILED,
	flotillav1.CommandState_COMMAND_STATE_CANCELLED, flotillav1.CommandState_COMMAND_STATE_TIMED_OUT,
	flotillav1.CommandState_COMMAND_STATE_REJECTED, flotillav1.CommandState_COMMAND_STATE_SKIPPED,
}

func TestTerminal(t *testing.T) {
	for _, s := range append(allStates(), flotillav1.CommandState(42)) {
		if got, want := Terminal(s), slices.Contains(terminalStates, s); got != want {
			t.Errorf("Terminal(%v) = %v, want %v", s, got, want)
		}
	}
}

// The lifecycle is PENDING → ACCEPTED → RUNNING → a terminal state; an
// event may skip steps forward but never move a command back, and nothing
// follows a terminal state.
func TestRankNeverMovesBackwards(t *testing.T) {
	lifecycle := [][]flotillav1.CommandState{
		{flotillav1.CommandState_COMMAND_STATE_UNSPECIFIED, flotillav1.CommandState_COMMAND_STATE_PENDING},
		{flotillav1.CommandState_COMMAND_STATE_ACCEPTED},
		{flotillav1.CommandState_COMMAND_STATE_RUNNING},
		terminalStates,
	}
	stage := map[flotillav1.CommandState]int{}
	for i, group := range lifecycle {
		for _, s := range group {
			stage[s] = i
		}
	}
	if len(stage) != len(allStates()) {
		t.Fatalf("the lifecycle covers %d states, the API has %d", len(stage), len(allStates()))
	}
	for _, from := range allStates() {
		for _, to := range allStates() {
			switch {
			case stage[to] < stage[from] && Rank(to) >= Rank(from):
				t.Errorf("%v after %v would move the command back (rank %d >= %d)", to, from, Rank(to), Rank(from))
			case stage[to] > stage[from] && Rank(to) <= Rank(from):
				t.Errorf("%v after %v is progress but ranks %d <= %d", to, from, Rank(to), Rank(from))
			case stage[to] == stage[from] && Rank(to) != Rank(from):
				t.Errorf("%v and %v are the same stage but rank %d and %d", from, to, Rank(from), Rank(to))
			}
		}
	}
}

func TestStateName(t *testing.T) {
	seen := map[string]flotillav1.CommandState{}
	for _, s := range allStates() {
		name := StateName(s)
		if s == flotillav1.CommandState_COMMAND_STATE_UNSPECIFIED {
			if name != "unknown" {
				t.Errorf("StateName(UNSPECIFIED) = %q", name)
			}
			continue
		}
		// The metric name is the enum name without its prefix, lower case.
		if want := strings.ToLower(strings.TrimPrefix(s.String(), "COMMAND_STATE_")); name != want {
			t.Errorf("StateName(%v) = %q, want %q", s, name, want)
		}
		if other, dup := seen[name]; dup {
			t.Errorf("%v and %v share the name %q", s, other, name)
		}
		seen[name] = s
	}
	if got := StateName(flotillav1.CommandState(42)); got != "unknown" {
		t.Errorf("StateName(42) = %q, want unknown", got)
	}
}
