package notify

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"flotilla.dev/controlplane/internal/store"
	"flotilla.dev/controlplane/internal/store/sqlite"
)

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// openStore opens a SQLite store in a temporary directory.
func openStore(t *testing.T) store.Store {
	t.Helper()
	s, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "flotilla.db"))
	if err != nil {
		t.Fatalf("sqlite.Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// newTestNotifier returns a notifier on st with clock, no jitter and a
// fresh metrics registry.
func newTestNotifier(t *testing.T, st store.NotificationStore, clock *fakeClock, adjust ...func(*Config)) *Notifier {
	t.Helper()
	cfg := Config{
		Store: st, Holder: "test-holder", Now: clock.Now, Metrics: NewMetrics(prometheus.NewRegistry()),
		Jitter: func(d time.Duration) time.Duration { return d },
	}
	for _, a := range adjust {
		a(&cfg)
	}
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// received is one request a test sink got.
type received struct {
	header http.Header
	body   []byte
}

// sink is a real HTTP server in this process that answers with the
// responses of respond, in turn, then 200.
type sink struct {
	*httptest.Server
	mu      sync.Mutex
	got     []received
	respond []func(w http.ResponseWriter)
}

func newSink(t *testing.T, respond ...func(w http.ResponseWriter)) *sink {
	s := &sink{respond: respond}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.got = append(s.got, received{header: r.Header.Clone(), body: body})
		var fn func(http.ResponseWriter)
		if len(s.respond) > 0 {
			fn, s.respond = s.respond[0], s.respond[1:]
		}
		s.mu.Unlock()
		if fn != nil {
			fn(w)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *sink) requests() []received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]received(nil), s.got...)
}

// status answers code with headers.
func status(code int, headers ...string) func(http.ResponseWriter) {
	return func(w http.ResponseWriter) {
		for i := 0; i+1 < len(headers); i += 2 {
			w.Header().Set(headers[i], headers[i+1])
		}
		w.WriteHeader(code)
	}
}

const testSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

func subscribe(t *testing.T, st store.Store, id, kind, url string, events ...string) store.Subscription {
	t.Helper()
	sub := store.Subscription{ID: id, Name: id, Events: events, SinkKind: kind, URL: url, CreatedAt: time.Now(), UpdatedAt: time.Now()}
	if kind == store.SinkWebhook {
		sub.Secrets = []string{testSecret}
	}
	if err := st.CreateSubscription(context.Background(), sub); err != nil {
		t.Fatal(err)
	}
	return sub
}

// step runs one delivery pass and waits for its attempts.
func step(t *testing.T, n *Notifier) int {
	t.Helper()
	claimed, err := n.Dispatch(context.Background())
	if err != nil {
		t.Fatalf("Dispatch: %v", err)
	}
	n.Wait()
	return claimed
}

func attempts(t *testing.T, st store.Store, sub string) []store.DeliveryAttempt {
	t.Helper()
	log, err := st.ListDeliveryAttempts(context.Background(), sub, 100)
	if err != nil {
		t.Fatal(err)
	}
	return log
}

func decode(t *testing.T, raw []byte) Body {
	t.Helper()
	var b Body
	if err := json.Unmarshal(raw, &b); err != nil {
		t.Fatalf("body %s: %v", raw, err)
	}
	return b
}

func readSlack(t *testing.T, raw []byte) slackMessage {
	t.Helper()
	var m slackMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("Slack message %s: %v", raw, err)
	}
	return m
}
