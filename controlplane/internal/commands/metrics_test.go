package commands

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	flotillav1 "flotilla.dev/gen/flotilla/v1"
	"flotilla.dev/pkg/command"

	"flotilla.dev/controlplane/internal/store"
)

// Every kind's series of every final state exists at 0 from start-up, so
// the first failure of a kind after a start is an increase() of 1 (a
// series born at 1 shows none, and the commands-failing alert never fired).
func TestMetricsStartAtZero(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m := NewMetrics(reg)
	wantStates := []string{"cancelled", "failed", "rejected", "skipped", "succeeded", "timed_out"}
	if got := finalStates(); len(got) != len(wantStates) {
		t.Fatalf("finalStates() = %v, want %v", got, wantStates)
	}
	tests := []struct {
		metric string
		want   int
	}{
		{"flotilla_commands_total", len(command.Kinds()) * len(wantStates)},
		{"flotilla_commands_in_flight", len(command.Kinds())},
		{"flotilla_command_duration_seconds", len(command.Kinds())},
	}
	for _, tt := range tests {
		if n := testutil.CollectAndCount(reg, tt.metric); n != tt.want {
			t.Errorf("%s: %d series at start-up, want %d", tt.metric, n, tt.want)
		}
	}
	for _, k := range command.Kinds() {
		for _, s := range wantStates {
			if v := testutil.ToFloat64(m.total.WithLabelValues(k, s)); v != 0 {
				t.Errorf("flotilla_commands_total{kind=%q,state=%q} = %v at start-up, want 0", k, s, v)
			}
		}
	}

	now := time.Unix(1_700_000_000, 0)
	m.inFlight(command.KindPull, 1)
	m.finished(store.HostCommand{Kind: command.KindPull, State: int32(flotillav1.CommandState_COMMAND_STATE_FAILED),
		ReleasedAt: now, FinishedAt: now.Add(2 * time.Second)})
	if v := testutil.ToFloat64(m.total.WithLabelValues(command.KindPull, "failed")); v != 1 {
		t.Errorf("after one failed pull flotilla_commands_total = %v, want 1", v)
	}
	if n := testutil.CollectAndCount(reg, "flotilla_commands_total"); n != len(command.Kinds())*len(wantStates) {
		t.Errorf("a finished command added series: %d, want %d", n, len(command.Kinds())*len(wantStates))
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
}
