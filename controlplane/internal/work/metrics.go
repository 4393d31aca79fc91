package work

import (
	"github.com/prometheus/client_golang/prometheus"

	"flotilla.dev/controlplane/internal/metrics"
)

// Metrics are the claimers' metrics, one series per kind of work. A nil
// *Metrics records nothing; one *Metrics serves every claimer of a process.
type Metrics struct {
	held      *prometheus.GaugeVec
	claims    *prometheus.CounterVec
	takeovers *prometheus.CounterVec
	losses    *prometheus.CounterVec
}

// NewMetrics creates the metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		held: metrics.GaugeVec("flotilla_work_leases_held",
			"Work leases this replica holds (the pieces of work it drives), by kind (rollout, command).", "kind"),
		claims: metrics.CounterVec("flotilla_work_lease_claims_total",
			"Work leases this replica acquired, by kind.", "kind"),
		takeovers: metrics.CounterVec("flotilla_work_lease_takeovers_total",
			"Work leases this replica acquired after another holder had them (a failover or a hand-over), by kind.", "kind"),
		losses: metrics.CounterVec("flotilla_work_lease_losses_total",
			"Work leases this replica lost before its work finished (taken by another holder, or not renewed in time), by kind.", "kind"),
	}
	reg.MustRegister(m.held, m.claims, m.takeovers, m.losses)
	return m
}

// kind creates the kind's series at 0, so that increase() sees the first
// event.
func (m *Metrics) kind(kind string) {
	if m == nil {
		return
	}
	m.held.WithLabelValues(kind)
	m.claims.WithLabelValues(kind)
	m.takeovers.WithLabelValues(kind)
	m.losses.WithLabelValues(kind)
}

func (m *Metrics) claimed(kind string, takeover bool) {
	if m == nil {
		return
	}
	m.held.WithLabelValues(kind).Inc()
	m.claims.WithLabelValues(kind).Inc()
	if takeover {
		m.takeovers.WithLabelValues(kind).Inc()
	}
}

func (m *Metrics) ended(kind string, lost bool) {
	if m == nil {
		return
	}
	m.held.WithLabelValues(kind).Dec()
	if lost {
		m.losses.WithLabelValues(kind).Inc()
	}
}
