package api

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// Every registration result exists at 0 from start-up, so an alert or
// panel on increase() sees the first refusal after a start.
func TestMetricsStartAtZero(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m := NewMetrics(reg)
	results := []string{"ok", "refused", "error", "limited"}
	if n := testutil.CollectAndCount(reg, "flotilla_agent_registrations_total"); n != len(results) {
		t.Errorf("%d registration series at start-up, want %d", n, len(results))
	}
	for _, r := range results {
		if v := testutil.ToFloat64(m.registrations.WithLabelValues(r)); v != 0 {
			t.Errorf("flotilla_agent_registrations_total{result=%q} = %v, want 0", r, v)
		}
	}
	m.registration("refused")
	m.streamOpened()
	m.streamOpened()
	m.streamClosed()
	if v := testutil.ToFloat64(m.registrations.WithLabelValues("refused")); v != 1 {
		t.Errorf("refused = %v after one refusal, want 1", v)
	}
	if v := testutil.ToFloat64(m.streams); v != 1 {
		t.Errorf("flotilla_agent_streams = %v, want 1", v)
	}
	if n := testutil.CollectAndCount(reg, "flotilla_agent_registrations_total"); n != len(results) {
		t.Errorf("a registration added a series: %d, want %d", n, len(results))
	}
}
