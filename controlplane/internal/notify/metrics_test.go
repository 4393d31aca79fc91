package notify

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"flotilla.dev/controlplane/internal/store"
)

// The counters follow each attempt by subscription, sink and outcome; the
// queue gauges follow the outbox.
func TestMetrics(t *testing.T) {
	st, clock := openStore(t), newFakeClock()
	rx := newSink(t, status(500))
	subscribe(t, st, "ns-1", store.SinkWebhook, rx.URL, TypeBackupFailed)
	n := newTestNotifier(t, st, clock)
	m := n.cfg.Metrics
	publish(t, n, Event{Type: TypeBackupFailed, Summary: "backup failed"})
	clock.Advance(30 * time.Second)
	n.maintain(context.Background())
	if got := testutil.ToFloat64(m.pending); got != 1 {
		t.Fatalf("queue_pending = %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.oldest); got != 30 {
		t.Fatalf("queue_oldest_age_seconds = %v, want 30", got)
	}
	step(t, n)
	clock.Advance(time.Hour)
	step(t, n)
	n.maintain(context.Background())
	for outcome, want := range map[string]float64{store.AttemptRetry: 1, store.AttemptDelivered: 1, store.AttemptDead: 0} {
		if got := testutil.ToFloat64(m.deliveries.WithLabelValues("ns-1", store.SinkWebhook, outcome)); got != want {
			t.Errorf("deliveries_total{outcome=%s} = %v, want %v", outcome, got, want)
		}
	}
	if got := testutil.ToFloat64(m.published.WithLabelValues(TypeBackupFailed)); got != 1 {
		t.Errorf("events_total{type=backup.failed} = %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.pending) + testutil.ToFloat64(m.oldest); got != 0 {
		t.Errorf("queue gauges = %v after delivery, want 0", got)
	}
	if got := testutil.CollectAndCount(m.attempt); got != 1 {
		t.Errorf("attempt_duration_seconds has %d series, want 1 (webhook)", got)
	}
}
