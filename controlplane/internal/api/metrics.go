package api

import (
	"github.com/prometheus/client_golang/prometheus"

	"flotilla.dev/controlplane/internal/metrics"
)

// Metrics are the agent service's own counters. A nil *Metrics records
// nothing, so tests need not build one.
type Metrics struct {
	registrations *prometheus.CounterVec
	streams       prometheus.Gauge
}

// NewMetrics creates the metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		registrations: metrics.CounterVec("flotilla_agent_registrations_total",
			"Agent registration attempts by result (ok, refused, error, limited).", "result"),
		streams: metrics.Gauge("flotilla_agent_streams", "Agent streams currently open."),
	}
	for _, r := range []string{"ok", "refused", "error", "limited"} {
		m.registrations.WithLabelValues(r)
	}
	reg.MustRegister(m.registrations, m.streams)
	return m
}

func (m *Metrics) registration(result string) {
	if m != nil {
		m.registrations.WithLabelValues(result).Inc()
	}
}

func (m *Metrics) streamOpened() {
	if m != nil {
		m.streams.Inc()
	}
}

func (m *Metrics) streamClosed() {
	if m != nil {
		m.streams.Dec()
	}
}
