package rollout

import (
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/controlplane/internal/metrics"
)

// Metrics are the rollout engine's metrics. A nil *Metrics records nothing.
type Metrics struct {
	active       *prometheus.GaugeVec
	finished     *prometheus.CounterVec
	started      prometheus.Counter
	hosts        *prometheus.GaugeVec
	batch        prometheus.Histogram
	hostStep     *prometheus.HistogramVec
	rollbacks    *prometheus.CounterVec
	stepOverhead prometheus.Histogram
	analysis     *prometheus.CounterVec
	windows      *prometheus.CounterVec
}

// NewMetrics creates the metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		active: metrics.GaugeVec("flotilla_rollouts_active",
			"Rollouts not yet finished, by state (preparing, running, paused, baking, rolling_back).", "state"),
		finished: metrics.CounterVec("flotilla_rollouts_finished_total",
			"Rollouts that reached a final state, by state.", "state"),
		started: metrics.Counter("flotilla_rollouts_started_total",
			"Rollouts started (StartRollout and RollbackService)."),
		hosts: metrics.GaugeVec("flotilla_rollout_hosts", "Hosts of active rollouts, by step.", "step"),
		batch: metrics.Histogram("flotilla_rollout_batch_duration_seconds",
			"Time from a batch's start to its last host's end.",
			[]float64{1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600}),
		hostStep: metrics.HistogramVec("flotilla_rollout_host_step_duration_seconds",
			"Time a host spent in a step (draining, restarting, health_check, undraining).",
			[]float64{.1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600}, "step"),
		rollbacks: metrics.CounterVec("flotilla_rollout_rollbacks_total",
			"Rollbacks: auto (max_failures with auto_rollback), abort (AbortRollout with rollback), service (RollbackService).", "trigger"),
		stepOverhead: metrics.Histogram("flotilla_rollout_engine_step_seconds",
			"Time the engine spends in one reconciliation step of a rollout (store write included).",
			[]float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1}),
		analysis: metrics.CounterVec("flotilla_rollout_analysis_measurements_total",
			"Analysis queries measured (analysis gates and bakes), by verdict: pass, fail, inconclusive.", "verdict"),
		windows: metrics.CounterVec("flotilla_rollout_window_events_total",
			"Deploy-window decisions: paused (a rollout reached a window's end before a batch), resumed (the next window opened), "+
				"refused (StartRollout outside the windows), overridden (started outside them with override_window).", "event"),
	}
	// Every series a panel or alert reads exists from start-up, at 0: a
	// counter born at 1 shows no increase(), a gauge that is missing reads
	// as "no data" rather than none.
	for v := range flotillav1.RolloutState_name {
		switch s := flotillav1.RolloutState(v); {
		case s == flotillav1.RolloutState_ROLLOUT_STATE_UNSPECIFIED:
		case Terminal(s):
			m.finished.WithLabelValues(stateName(s))
		default:
			m.active.WithLabelValues(stateName(s))
		}
	}
	for v := range flotillav1.HostStep_name {
		if s := flotillav1.HostStep(v); s != flotillav1.HostStep_HOST_STEP_UNSPECIFIED {
			m.hosts.WithLabelValues(stepName(s))
			if activeStep(s) {
				m.hostStep.WithLabelValues(stepName(s))
			}
		}
	}
	for _, t := range []string{"auto", "abort", "service"} {
		m.rollbacks.WithLabelValues(t)
	}
	for _, v := range []string{"pass", "fail", "inconclusive"} {
		m.analysis.WithLabelValues(v)
	}
	for _, v := range windowEvents {
		m.windows.WithLabelValues(v)
	}
	reg.MustRegister(m.active, m.finished, m.started, m.hosts, m.batch, m.hostStep, m.rollbacks, m.stepOverhead, m.analysis, m.windows)
	return m
}

func stateName(s flotillav1.RolloutState) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "ROLLOUT_STATE_"))
}

func stepName(s flotillav1.HostStep) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "HOST_STEP_"))
}

func (m *Metrics) rolloutState(from, to flotillav1.RolloutState) {
	if m == nil || from == to {
		return
	}
	if from != flotillav1.RolloutState_ROLLOUT_STATE_UNSPECIFIED && !Terminal(from) {
		m.active.WithLabelValues(stateName(from)).Dec()
	}
	switch {
	case to == flotillav1.RolloutState_ROLLOUT_STATE_UNSPECIFIED:
		// The runner stops counting the rollout (reloaded, or driven by
		// another replica from now on).
	case Terminal(to):
		m.finished.WithLabelValues(stateName(to)).Inc()
	default:
		m.active.WithLabelValues(stateName(to)).Inc()
	}
}

func (m *Metrics) rolloutStarted() {
	if m != nil {
		m.started.Inc()
	}
}

func (m *Metrics) hostSteps(from, to flotillav1.HostStep, inStep time.Duration) {
	if m == nil {
		return
	}
	if from != flotillav1.HostStep_HOST_STEP_UNSPECIFIED {
		m.hosts.WithLabelValues(stepName(from)).Dec()
		if activeStep(from) && inStep >= 0 {
			m.hostStep.WithLabelValues(stepName(from)).Observe(inStep.Seconds())
		}
	}
	if to != flotillav1.HostStep_HOST_STEP_UNSPECIFIED {
		m.hosts.WithLabelValues(stepName(to)).Inc()
	}
}

func (m *Metrics) batchDone(d time.Duration) {
	if m != nil {
		m.batch.Observe(d.Seconds())
	}
}

func (m *Metrics) rollback(trigger string) {
	if m != nil {
		m.rollbacks.WithLabelValues(trigger).Inc()
	}
}

// measured counts one analysis query's verdict.
func (m *Metrics) measured(v flotillav1.AnalysisVerdict) {
	if m != nil {
		m.analysis.WithLabelValues(strings.ToLower(strings.TrimPrefix(v.String(), "ANALYSIS_VERDICT_"))).Inc()
	}
}

// windowEvents are the event label's values of the window metric.
var windowEvents = []string{"paused", "resumed", "refused", "overridden"}

// window counts one deploy-window decision (one of windowEvents).
func (m *Metrics) window(event string) {
	if m != nil {
		m.windows.WithLabelValues(event).Inc()
	}
}

func (m *Metrics) step(d time.Duration) {
	if m != nil {
		m.stepOverhead.Observe(d.Seconds())
	}
}
