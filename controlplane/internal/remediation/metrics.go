package remediation

import (
	"github.com/prometheus/client_golang/prometheus"

	"flotilla.dev/controlplane/internal/metrics"
)

// Metrics are the remediation driver's counters. Only the driver (the
// holder of the "remediation" work lease) counts, so a deployment exports
// each restart once. A nil *Metrics counts nothing.
type Metrics struct {
	restarts    *prometheus.CounterVec
	blocked     *prometheus.CounterVec
	escalations *prometheus.CounterVec
	oomKills    *prometheus.CounterVec
	failed      *prometheus.CounterVec
}

// NewMetrics creates the metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		restarts: metrics.CounterVec("flotilla_remediation_restarts_total",
			"Automatic restarts of a service's containers for their memory, by service and trigger (threshold, growth).", "service", "reason"),
		blocked: metrics.CounterVec("flotilla_remediation_guard_blocked_total",
			"Automatic restarts a policy asked for that a guard rail stopped, once per host and episode, by service and rail "+
				"(restarts_per_hour, max_unavailable, active_rollout).", "service", "guard"),
		escalations: metrics.CounterVec("flotilla_remediation_escalations_total",
			"Escalations of the guard rails (a host needed more automatic restarts than its hourly bound: restarts are not helping), by service.",
			"service"),
		oomKills: metrics.CounterVec("flotilla_remediation_oom_kills_total",
			"Runs of a service's containers that the kernel ended for lack of memory (told apart from planned restarts), by service.", "service"),
		failed: metrics.CounterVec("flotilla_remediation_start_failures_total",
			"Automatic restarts that could not be started (refused by the rollout engine or the store), by service.", "service"),
	}
	reg.MustRegister(m.restarts, m.blocked, m.escalations, m.oomKills, m.failed)
	return m
}

// service creates a service's series at 0, so that increase() sees the
// first event.
func (m *Metrics) service(name string) {
	if m == nil {
		return
	}
	for _, r := range []string{ReasonThreshold, ReasonGrowth} {
		m.restarts.WithLabelValues(name, r)
	}
	for _, g := range []string{RailHourly, RailMaxUnavailable, RailActiveRollout} {
		m.blocked.WithLabelValues(name, g)
	}
	m.escalations.WithLabelValues(name)
	m.oomKills.WithLabelValues(name)
	m.failed.WithLabelValues(name)
}

func (m *Metrics) restarted(service, reason string, n int) {
	if m != nil {
		m.restarts.WithLabelValues(service, reason).Add(float64(n))
	}
}

func (m *Metrics) guardBlocked(service, rail string) {
	if m != nil {
		m.blocked.WithLabelValues(service, rail).Inc()
	}
}

func (m *Metrics) escalated(service string) {
	if m != nil {
		m.escalations.WithLabelValues(service).Inc()
	}
}

func (m *Metrics) oomKilled(service string) {
	if m != nil {
		m.oomKills.WithLabelValues(service).Inc()
	}
}

func (m *Metrics) startFailed(service string) {
	if m != nil {
		m.failed.WithLabelValues(service).Inc()
	}
}
