package notify

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"flotilla.dev/controlplane/internal/store"
	"flotilla.dev/controlplane/internal/store/postgres"
)

// Two replicas' notifiers run on one PostgreSQL database, both publishing:
// every event reaches the sink exactly once (its claims are the replicas'
// only coordination), and each replica counts what it delivered.
func TestReplicasDeliverEachEventOnce(t *testing.T) {
	p := cluster.Get(t)
	dsn := p.AdminConninfo(p.CreateDatabase(t))
	var mu sync.Mutex
	seen := make(map[string]int)
	rx := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen[r.Header.Get(HeaderID)]++
		mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}))
	defer rx.Close()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var notifiers []*Notifier
	for i := range 2 {
		st, err := postgres.Open(ctx, postgres.Config{DSN: dsn})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		if i == 0 {
			subscribe(t, st, "ns-1", store.SinkWebhook, rx.URL, TypeAgentLost)
		}
		n, err := New(Config{Store: st, Holder: fmt.Sprintf("replica-%d", i), Metrics: NewMetrics(prometheus.NewRegistry()),
			PollInterval: 20 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		notifiers = append(notifiers, n)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := n.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("Run: %v", err)
			}
		}()
	}
	defer func() { cancel(); wg.Wait() }()
	const events = 60
	for i := range events {
		publish(t, notifiers[i%2], Event{Type: TypeAgentLost, OrderKey: fmt.Sprintf("agent-%d", i%7), Summary: "lost"})
	}
	waitFor(t, "every event delivered", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) == events
	})
	cancel()
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	for id, n := range seen {
		if n != 1 {
			t.Errorf("%s delivered %d times", id, n)
		}
	}
	total := 0.0
	for _, n := range notifiers {
		total += testutil.ToFloat64(n.cfg.Metrics.deliveries.WithLabelValues("ns-1", store.SinkWebhook, store.AttemptDelivered))
	}
	if total != events {
		t.Fatalf("the replicas counted %v deliveries, want %d", total, events)
	}
}
