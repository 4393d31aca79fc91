package commands

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"flotilla.dev/controlplane/internal/fault"
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

var finalStates = []flotillav1.CommandState{
	flotillav1.CommandState_COMMAND_STATE_SUCCEEDED, flotillav1.CommandState_COMMAND_STATE_FAILED,
	flotillav1.CommandState_COMMAND_STATE_CANCELLED, flotillav1.CommandState_COMMAND_STATE_TIMED_OUT,
	flotillav1.CommandState_COMMAND_STATE_REJECTED, flotillav1.CommandState_COMMAND_STATE_SKIPPED,
}

func TestTerminal(t *testing.T) {
	for _, s := range allStates() {
		if got, want := Terminal(s), slices.Contains(finalStates, s); got != want {
			t.Errorf("Terminal(%v) = %v, want %v", s, got, want)
		}
	}
	if Terminal(flotillav1.CommandState(42)) {
		t.Error("an unknown state is terminal")
	}
}

func TestFailedCountsAgainstMaxErrors(t *testing.T) {
	want := []flotillav1.CommandState{
		flotillav1.CommandState_COMMAND_STATE_FAILED, flotillav1.CommandState_COMMAND_STATE_TIMED_OUT,
		flotillav1.CommandState_COMMAND_STATE_REJECTED, flotillav1.CommandState_COMMAND_STATE_CANCELLED,
	}
	for _, s := range allStates() {
		if got := failed(s); got != slices.Contains(want, s) {
			t.Errorf("failed(%v) = %v", s, got)
		}
		if failed(s) && !Terminal(s) {
			t.Errorf("%v counts as a failure but is not final", s)
		}
	}
}

// The lifecycle is PENDING → ACCEPTED → RUNNING → a final state; an event
// may skip steps forward but never move a command back, and nothing
// follows a final state.
func TestRankNeverMovesBackwards(t *testing.T) {
	lifecycle := [][]flotillav1.CommandState{
		{flotillav1.CommandState_COMMAND_STATE_UNSPECIFIED, flotillav1.CommandState_COMMAND_STATE_PENDING},
		{flotillav1.CommandState_COMMAND_STATE_ACCEPTED},
		{flotillav1.CommandState_COMMAND_STATE_RUNNING},
		finalStates,
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
			case stage[to] < stage[from] && rank(to) >= rank(from):
				t.Errorf("%v after %v would move the command back (rank %d >= %d)", to, from, rank(to), rank(from))
			case stage[to] > stage[from] && rank(to) <= rank(from):
				t.Errorf("%v after %v is progress but ranks %d <= %d", to, from, rank(to), rank(from))
			case stage[to] == stage[from] && rank(to) != rank(from):
				t.Errorf("%v and %v are the same stage but rank %d and %d", from, to, rank(from), rank(to))
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
}

func TestResolveLimit(t *testing.T) {
	tests := []struct {
		name  string
		limit *flotillav1.Limit
		n     int
		def   int
		want  int
	}{
		{"unset gives the default", nil, 7, 7, 7},
		{"unset max_errors gives no limit", nil, 7, 0, 0},
		{"empty limit gives the default", &flotillav1.Limit{}, 7, 3, 3},
		{"count", count(3), 10, 10, 3},
		{"count above the hosts", count(50), 4, 4, 50},
		{"50% of 4", percent(50), 4, 4, 2},
		{"50% of 3 rounds up", percent(50), 3, 3, 2},
		{"33% of 3 rounds up to one", percent(33), 3, 3, 1},
		{"1% of 3 is at least one", percent(1), 3, 3, 1},
		{"10% of 25", percent(10), 25, 25, 3},
		{"29% of 100 is exact", percent(29), 100, 100, 29},
		{"100% of 7", percent(100), 7, 7, 7},
		{"percent of no hosts is one", percent(50), 0, 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := resolveLimit(tt.limit, tt.n, tt.def); got != tt.want {
				t.Fatalf("resolveLimit = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestValidateLimit(t *testing.T) {
	tests := []struct {
		limit *flotillav1.Limit
		field string // "" when valid
	}{
		{nil, ""},
		{&flotillav1.Limit{}, ""},
		{count(1), ""},
		{count(100000), ""},
		{percent(1), ""},
		{percent(100), ""},
		{count(0), "max_errors.count"},
		{count(-1), "max_errors.count"},
		{percent(0), "max_errors.percent"},
		{percent(101), "max_errors.percent"},
		{percent(-5), "max_errors.percent"},
	}
	for _, tt := range tests {
		err := validateLimit("max_errors", tt.limit)
		switch {
		case tt.field == "" && err != nil:
			t.Errorf("validateLimit(%v) = %v, want nil", tt.limit, err)
		case tt.field != "" && (!errors.Is(err, fault.ErrInvalid) || !strings.HasPrefix(err.Error(), tt.field+": ")):
			t.Errorf("validateLimit(%v) = %v, want InvalidArgument naming %s", tt.limit, err, tt.field)
		}
	}
}

func count(n int32) *flotillav1.Limit {
	return &flotillav1.Limit{Kind: &flotillav1.Limit_Count{Count: n}}
}

func percent(n int32) *flotillav1.Limit {
	return &flotillav1.Limit{Kind: &flotillav1.Limit_Percent{Percent: n}}
}
