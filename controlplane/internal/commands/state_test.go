package commands

import (
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	flotillav1 "flotilla.dev/gen/flotilla/v1"
	"flotilla.dev/pkg/command"
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

func TestFailedCountsAgainstMaxErrors(t *testing.T) {
	want := []flotillav1.CommandState{
		flotillav1.CommandState_COMMAND_STATE_FAILED, flotillav1.CommandState_COMMAND_STATE_TIMED_OUT,
		flotillav1.CommandState_COMMAND_STATE_REJECTED, flotillav1.CommandState_COMMAND_STATE_CANCELLED,
	}
	for _, s := range allStates() {
		if got := failed(s); got != slices.Contains(want, s) {
			t.Errorf("failed(%v) = %v", s, got)
		}
		if failed(s) && !command.Terminal(s) {
			t.Errorf("%v counts as a failure but is not terminal", s)
		}
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
		case tt.field != "" && (status.Code(err) != codes.InvalidArgument || !strings.HasPrefix(status.Convert(err).Message(), tt.field+": ")):
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
