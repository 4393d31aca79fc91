package notify

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"flotilla.dev/controlplane/internal/store"
	"flotilla.dev/controlplane/internal/store/sqlite"
)

// BenchmarkPublishToDelivered measures an event's latency from Publish to
// a local receiver's answer: the outbox write, the woken delivery loop's
// claim, the signed POST and the stored outcome, on SQLite.
func BenchmarkPublishToDelivered(b *testing.B) {
	st, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "flotilla.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	got := make(chan string, 1)
	rx := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
		got <- r.Header.Get(HeaderID)
	}))
	defer rx.Close()
	sub := store.Subscription{ID: "ns-1", Name: "bench", Events: []string{TypeAgentLost}, SinkKind: store.SinkWebhook,
		URL: rx.URL, Secrets: []string{testSecret}, CreatedAt: time.Now(), UpdatedAt: time.Now()}
	if err := st.CreateSubscription(context.Background(), sub); err != nil {
		b.Fatal(err)
	}
	n, err := New(Config{Store: st, Metrics: NewMetrics(prometheus.NewRegistry())})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = n.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	for b.Loop() {
		if err := n.Publish(ctx, Event{Type: TypeAgentLost, Summary: "lost"}); err != nil {
			b.Fatal(err)
		}
		<-got
	}
}
