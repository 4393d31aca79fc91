package notify

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"flotilla.dev/controlplane/internal/store"
)

// heldSink holds every request until released and counts those in flight.
type heldSink struct {
	*httptest.Server
	release  chan struct{}
	mu       sync.Mutex
	inFlight int
	maxSeen  int
}

func newHeldSink(t *testing.T) *heldSink {
	s := &heldSink{release: make(chan struct{})}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.inFlight++
		s.maxSeen = max(s.maxSeen, s.inFlight)
		s.mu.Unlock()
		select {
		case <-s.release:
		case <-r.Context().Done():
		}
		s.mu.Lock()
		s.inFlight--
		s.mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(func() {
		select {
		case <-s.release:
		default:
			close(s.release)
		}
		s.Close()
	})
	return s
}

func (s *heldSink) counts() (inFlight, maxSeen int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inFlight, s.maxSeen
}

// A sink that does not answer holds only its own lane: at most PerSink
// attempts in flight and twice that claimed, while another subscription's
// events are delivered and publishing goes on.
func TestSlowSinkHoldsOnlyItsLane(t *testing.T) {
	st, clock := openStore(t), newFakeClock()
	slow, fast := newHeldSink(t), newSink(t)
	subscribe(t, st, "ns-slow", store.SinkWebhook, slow.URL, TypeAgentLost)
	subscribe(t, st, "ns-fast", store.SinkWebhook, fast.URL, TypeAgentLost)
	n := newTestNotifier(t, st, clock, func(c *Config) { c.PerSink = 2; c.AttemptTimeout = time.Hour })
	ctx := context.Background()
	for range 10 {
		publish(t, n, Event{Type: TypeAgentLost, Summary: "lost"})
	}
	if _, err := n.Dispatch(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the slow sink holding 2 requests", func() bool { inFlight, _ := slow.counts(); return inFlight == 2 })
	// Later passes claim the fast subscription's remaining deliveries but
	// no more of the slow one's than its lane holds.
	waitFor(t, "all 10 events at the fast sink", func() bool {
		if _, err := n.Dispatch(ctx); err != nil {
			t.Fatal(err)
		}
		return len(fast.requests()) == 10
	})
	n.mu.Lock()
	lane := n.lanes["ns-slow"]
	claimed := len(lane.queue) + lane.running
	n.mu.Unlock()
	if claimed < 4 || claimed > 5 {
		t.Fatalf("the slow lane holds %d deliveries, want 2*PerSink (4), plus at most one round's PerSink-1", claimed)
	}
	publish(t, n, Event{Type: TypeAgentLost, Summary: "published while the slow sink holds"})
	close(slow.release)
	n.Wait()
	if _, maxSeen := slow.counts(); maxSeen != 2 {
		t.Fatalf("the slow sink saw %d requests at once, want at most PerSink = 2", maxSeen)
	}
}

// waitFor polls cond until it holds, for at most a generous minute.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Deliveries claimed but not yet attempted when the notifier stops are
// given back: another holder claims them at once, with no attempt counted.
func TestStopGivesBackQueuedClaims(t *testing.T) {
	st, clock := openStore(t), newFakeClock()
	slow := newHeldSink(t)
	subscribe(t, st, "ns-slow", store.SinkWebhook, slow.URL, TypeAgentLost)
	n := newTestNotifier(t, st, clock, func(c *Config) { c.PerSink = 1; c.PollInterval = time.Hour })
	for range 3 {
		publish(t, n, Event{Type: TypeAgentLost, Summary: "lost"})
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	waitFor(t, "one attempt in flight", func() bool { inFlight, _ := slow.counts(); return inFlight == 1 })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	ds, err := st.ClaimDeliveries(context.Background(), store.DeliveryClaim{Holder: "other", Now: clock.Now(),
		Until: clock.Now().Add(time.Minute), Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	// The attempt in flight was cancelled and scheduled again (after the
	// backoff); the two queued ones are free now, unattempted.
	if len(ds) != 2 || ds[0].Attempts != 0 || ds[1].Attempts != 0 {
		t.Fatalf("claimed %d deliveries after the stop (%+v), want the 2 queued ones, unattempted", len(ds), ds)
	}
	if log := attempts(t, st, "ns-slow"); len(log) != 1 || log[0].Outcome != store.AttemptRetry {
		t.Fatalf("delivery log %+v, want the cancelled attempt as a retry", log)
	}
}
