package notify

import (
	"context"
	"net/http"
	"strconv"
	"testing"
	"time"

	"flotilla.dev/controlplane/internal/store"
)

func publish(t *testing.T, n *Notifier, ev Event) {
	t.Helper()
	if err := n.Publish(context.Background(), ev); err != nil {
		t.Fatalf("Publish(%s): %v", ev.Type, err)
	}
}

// A receiver that fails three times then accepts: every attempt carries
// the same webhook-id and a signature that verifies; the event is
// accepted once; the events of one rollout arrive in order, the later
// ones held back while the first is retried.
func TestWebhookRetriesUntilAcceptedInOrder(t *testing.T) {
	st, clock := openStore(t), newFakeClock()
	rx := newSink(t, status(500), status(502), status(503))
	subscribe(t, st, "ns-1", store.SinkWebhook, rx.URL, TypeRolloutStarted, TypeRolloutFailed)
	n := newTestNotifier(t, st, clock, func(c *Config) { c.MinBackoff = 10 * time.Second })
	for i, typ := range []string{TypeRolloutStarted, TypeRolloutFailed} {
		publish(t, n, Event{ID: "ev-" + strconv.Itoa(i), Type: typ, OrderKey: "ro-1", Summary: typ,
			OccurredAt: clock.Now().Add(time.Duration(i) * time.Millisecond)})
	}
	for range 3 {
		if got := step(t, n); got != 1 {
			t.Fatalf("claimed %d, want ev-0 alone (ev-1 waits behind it)", got)
		}
		clock.Advance(time.Hour)
	}
	step(t, n) // ev-0 accepted
	step(t, n) // then ev-1
	reqs := rx.requests()
	var ids []string
	for _, r := range reqs {
		id, ts := r.header.Get(HeaderID), r.header.Get(HeaderTimestamp)
		if err := Verify(testSecret, id, ts, r.header.Get(HeaderSignature), r.body, clock.Now(), 24*time.Hour); err != nil {
			t.Errorf("request %s: %v", id, err)
		}
		if b := decode(t, r.body); b.ID != id || b.Version != BodyVersion {
			t.Errorf("body %+v does not carry webhook-id %s and version %d", b, id, BodyVersion)
		}
		ids = append(ids, id)
	}
	want := []string{"ev-0", "ev-0", "ev-0", "ev-0", "ev-1"}
	if len(ids) != len(want) {
		t.Fatalf("requests %v, want %v", ids, want)
	}
	for i := range want {
		if ids[i] != want[i] {
			t.Fatalf("requests %v, want %v", ids, want)
		}
	}
	log := attempts(t, st, "ns-1")
	if len(log) != 5 || log[0].Outcome != store.AttemptDelivered || log[0].EventID != "ev-1" ||
		log[1].Outcome != store.AttemptDelivered || log[1].Attempt != 4 ||
		log[2].Outcome != store.AttemptRetry || log[2].HTTPStatus != 503 || log[2].Error != "sink answered 503" {
		t.Fatalf("delivery log = %+v", log)
	}
	if q, _ := st.PendingDeliveries(context.Background(), ""); q.Pending != 0 {
		t.Fatalf("%d deliveries still pending", q.Pending)
	}
}

// A Retry-After (seconds or an HTTP date) sets the next attempt; without
// one, the backoff doubles from MinBackoff up to MaxBackoff.
func TestRetryHonoursRetryAfter(t *testing.T) {
	clock := newFakeClock()
	httpDate := clock.Now().Add(45 * time.Second).Format(http.TimeFormat)
	tests := []struct {
		name    string
		respond []func(http.ResponseWriter)
		waits   []time.Duration
	}{
		{"seconds", []func(http.ResponseWriter){status(429, "Retry-After", "120")}, []time.Duration{120 * time.Second}},
		{"http date", []func(http.ResponseWriter){status(503, "Retry-After", httpDate)}, []time.Duration{45 * time.Second}},
		{"backoff", []func(http.ResponseWriter){status(500), status(500), status(500), status(500)},
			[]time.Duration{10 * time.Second, 20 * time.Second, 40 * time.Second, 60 * time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, clock := openStore(t), newFakeClock()
			rx := newSink(t, tt.respond...)
			subscribe(t, st, "ns-1", store.SinkWebhook, rx.URL, TypeAgentLost)
			n := newTestNotifier(t, st, clock, func(c *Config) { c.MinBackoff, c.MaxBackoff = 10*time.Second, time.Minute })
			publish(t, n, Event{Type: TypeAgentLost, Summary: "lost"})
			step(t, n)
			for i, wait := range tt.waits {
				clock.Advance(wait - time.Second)
				if got := step(t, n); got != 0 {
					t.Fatalf("retry %d: claimed %d deliveries %s before it was due", i+1, got, time.Second)
				}
				clock.Advance(time.Second)
				if got := step(t, n); got != 1 {
					t.Fatalf("retry %d: claimed %d deliveries when due, want 1", i+1, got)
				}
			}
			if got := len(rx.requests()); got != len(tt.waits)+1 {
				t.Fatalf("%d requests, want %d", got, len(tt.waits)+1)
			}
			if log := attempts(t, st, "ns-1"); log[0].Outcome != store.AttemptDelivered {
				t.Fatalf("last attempt %+v, want delivered", log[0])
			}
		})
	}
}

// A sink that keeps failing is given up after MaxAttempts; the next event
// of the same key is not held back by it any more.
func TestDeadAfterMaxAttempts(t *testing.T) {
	st, clock := openStore(t), newFakeClock()
	rx := newSink(t, status(500), status(500), status(500))
	subscribe(t, st, "ns-1", store.SinkWebhook, rx.URL, TypeCommandFailed)
	n := newTestNotifier(t, st, clock, func(c *Config) { c.MaxAttempts = 3 })
	publish(t, n, Event{ID: "ev-a", Type: TypeCommandFailed, OrderKey: "fc-1"})
	publish(t, n, Event{ID: "ev-b", Type: TypeCommandFailed, OrderKey: "fc-1"})
	for range 3 {
		step(t, n)
		clock.Advance(time.Hour)
	}
	log := attempts(t, st, "ns-1")
	if log[0].Outcome != store.AttemptDead || log[0].Attempt != 3 || log[0].EventID != "ev-a" {
		t.Fatalf("last attempt %+v, want ev-a dead at attempt 3", log[0])
	}
	step(t, n)
	if log := attempts(t, st, "ns-1"); log[0].EventID != "ev-b" || log[0].Outcome != store.AttemptDelivered {
		t.Fatalf("after ev-a died: %+v, want ev-b delivered", log[0])
	}
}

// A Slack channel gets at most one message a second: the events of a
// burst share one message, and those that come within the second after a
// message wait and go together.
func TestSlackCoalescesBursts(t *testing.T) {
	st, clock := openStore(t), newFakeClock()
	rx := newSink(t)
	subscribe(t, st, "ns-slack", store.SinkSlack, rx.URL, TypeAgentLost, TypeAgentBack)
	n := newTestNotifier(t, st, clock)
	for i := range 5 {
		publish(t, n, Event{Type: TypeAgentLost, OrderKey: "agent-" + strconv.Itoa(i), Summary: "Agent web-" + strconv.Itoa(i) + " is lost"})
	}
	if got := step(t, n); got != 5 {
		t.Fatalf("claimed %d, want the burst of 5", got)
	}
	publish(t, n, Event{Type: TypeAgentBack, Summary: "Agent web-0 is back"})
	publish(t, n, Event{Type: TypeAgentBack, Summary: "Agent web-1 is back"})
	clock.Advance(500 * time.Millisecond)
	if got := step(t, n); got != 0 {
		t.Fatalf("claimed %d within a second of the last message, want 0", got)
	}
	clock.Advance(500 * time.Millisecond)
	if got := step(t, n); got != 2 {
		t.Fatalf("claimed %d a second after the last message, want 2", got)
	}
	reqs := rx.requests()
	if len(reqs) != 2 {
		t.Fatalf("%d Slack messages, want 2", len(reqs))
	}
	first, second := readSlack(t, reqs[0].body), readSlack(t, reqs[1].body)
	if first.Text != "5 Flotilla events, first: Agent web-0 is lost" || len(first.Blocks) != 1+2*5 {
		t.Fatalf("first message: %q with %d blocks", first.Text, len(first.Blocks))
	}
	if second.Text != "2 Flotilla events, first: Agent web-0 is back" {
		t.Fatalf("second message: %q", second.Text)
	}
	if reqs[0].header.Get(HeaderSignature) != "" {
		t.Fatal("a Slack message carries a webhook signature")
	}
}
