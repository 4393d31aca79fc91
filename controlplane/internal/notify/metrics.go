package notify

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"flotilla.dev/controlplane/internal/metrics"
	"flotilla.dev/controlplane/internal/store"
)

// Metrics are the notifier's metrics. A nil *Metrics records nothing.
type Metrics struct {
	deliveries *prometheus.CounterVec
	attempt    *prometheus.HistogramVec
	published  *prometheus.CounterVec
	dropped    prometheus.Counter
	pending    prometheus.Gauge
	oldest     prometheus.Gauge
}

// NewMetrics creates the metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		deliveries: metrics.CounterVec("flotilla_notification_deliveries_total",
			"Delivery attempts by subscription, sink kind (webhook, slack) and outcome (delivered, retry, dead).",
			"subscription", "sink", "outcome"),
		attempt: metrics.HistogramVec("flotilla_notification_attempt_duration_seconds",
			"Time one delivery attempt took, by sink kind.",
			[]float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}, "sink"),
		published: metrics.CounterVec("flotilla_notification_events_total",
			"Events written to the outbox, by type.", "type"),
		dropped: metrics.Counter("flotilla_notification_publish_failures_total",
			"Events that could not be written to the outbox (store failure, or the in-memory queue full)."),
		pending: metrics.Gauge("flotilla_notification_queue_pending",
			"Deliveries not yet delivered nor given up (the whole outbox, as this replica last read it)."),
		oldest: metrics.Gauge("flotilla_notification_queue_oldest_age_seconds",
			"Age of the oldest pending delivery; 0 when none is pending."),
	}
	reg.MustRegister(m.deliveries, m.attempt, m.published, m.dropped, m.pending, m.oldest)
	for _, t := range append(Types, TypeTest) {
		m.published.WithLabelValues(t)
	}
	return m
}

// subscriptions gives every subscription's delivery series a 0 for each
// outcome, so that the first retry or give-up after a start or a
// subscription's creation is an increase the alert sees, not a series that
// appears at 1.
func (m *Metrics) subscriptions(subs []store.Subscription) {
	if m == nil {
		return
	}
	for _, s := range subs {
		for _, outcome := range []string{store.AttemptDelivered, store.AttemptRetry, store.AttemptDead} {
			m.deliveries.WithLabelValues(s.ID, s.SinkKind, outcome)
		}
	}
}

func (m *Metrics) delivered(sub, sink, outcome string, n int, took time.Duration) {
	if m == nil {
		return
	}
	m.deliveries.WithLabelValues(sub, sink, outcome).Add(float64(n))
	m.attempt.WithLabelValues(sink).Observe(took.Seconds())
}

func (m *Metrics) publishedEvent(t string) {
	if m != nil {
		m.published.WithLabelValues(t).Inc()
	}
}

func (m *Metrics) publishFailed() {
	if m != nil {
		m.dropped.Inc()
	}
}

func (m *Metrics) queue(q store.NotificationQueue, now time.Time) {
	if m == nil {
		return
	}
	m.pending.Set(float64(q.Pending))
	age := 0.0
	if q.Pending > 0 && !q.Oldest.IsZero() {
		age = max(now.Sub(q.Oldest).Seconds(), 0)
	}
	m.oldest.Set(age)
}
