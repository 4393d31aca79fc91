package rollout

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	flotillav1 "flotilla.dev/gen/flotilla/v1"
)

// Every series a panel or alert reads exists at 0 from start-up (a
// counter born at 1 shows no increase()), and state changes move values
// between those series instead of adding new ones.
func TestMetricsStartAtZero(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m := NewMetrics(reg)
	tests := []struct {
		metric string
		labels []string
	}{
		{"flotilla_rollouts_active", []string{"preparing", "running", "paused", "rolling_back", "baking", "switched"}},
		{"flotilla_rollouts_finished_total", []string{"succeeded", "failed", "rolled_back", "aborted", "rollback_failed"}},
		{"flotilla_rollout_hosts", []string{"pending", "draining", "restarting", "health_check", "undraining",
			"done", "failed", "skipped", "rolled_back", "rollback_failed", "starting_candidate", "ready", "switching"}},
		{"flotilla_rollout_host_step_duration_seconds", []string{"draining", "restarting", "health_check", "undraining",
			"starting_candidate", "switching"}},
		{"flotilla_rollout_rollbacks_total", []string{"auto", "abort", "service"}},
		{"flotilla_rollout_analysis_measurements_total", []string{"pass", "fail", "inconclusive"}},
	}
	series := map[string]int{}
	for _, tt := range tests {
		if n := testutil.CollectAndCount(reg, tt.metric); n != len(tt.labels) {
			t.Errorf("%s: %d series at start-up, want %d (%v)", tt.metric, n, len(tt.labels), tt.labels)
		}
		series[tt.metric] = testutil.CollectAndCount(reg, tt.metric)
	}
	for _, s := range tests[0].labels {
		if v := testutil.ToFloat64(m.active.WithLabelValues(s)); v != 0 {
			t.Errorf("flotilla_rollouts_active{state=%q} = %v, want 0", s, v)
		}
	}
	for _, s := range tests[1].labels {
		if v := testutil.ToFloat64(m.finished.WithLabelValues(s)); v != 0 {
			t.Errorf("flotilla_rollouts_finished_total{state=%q} = %v, want 0", s, v)
		}
	}

	m.rolloutState(flotillav1.RolloutState_ROLLOUT_STATE_UNSPECIFIED, flotillav1.RolloutState_ROLLOUT_STATE_RUNNING)
	m.hostSteps(flotillav1.HostStep_HOST_STEP_UNSPECIFIED, flotillav1.HostStep_HOST_STEP_DRAINING, -1)
	m.hostSteps(flotillav1.HostStep_HOST_STEP_DRAINING, flotillav1.HostStep_HOST_STEP_FAILED, time.Second)
	m.rolloutState(flotillav1.RolloutState_ROLLOUT_STATE_RUNNING, flotillav1.RolloutState_ROLLOUT_STATE_FAILED)
	m.rollback("auto")
	checks := []struct {
		name string
		c    prometheus.Collector
		want float64
	}{
		{"active running", m.active.WithLabelValues("running"), 0},
		{"finished failed", m.finished.WithLabelValues("failed"), 1},
		{"hosts draining", m.hosts.WithLabelValues("draining"), 0},
		{"hosts failed", m.hosts.WithLabelValues("failed"), 1},
		{"rollbacks auto", m.rollbacks.WithLabelValues("auto"), 1},
	}
	for _, c := range checks {
		if v := testutil.ToFloat64(c.c); v != c.want {
			t.Errorf("%s = %v, want %v", c.name, v, c.want)
		}
	}
	for metric, n := range series {
		if got := testutil.CollectAndCount(reg, metric); got != n {
			t.Errorf("%s: %d series after state changes, want the %d of start-up", metric, got, n)
		}
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
}
