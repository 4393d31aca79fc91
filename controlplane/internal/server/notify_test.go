package server_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/controlplane/internal/notify"
	"flotilla.dev/controlplane/internal/server"
	"flotilla.dev/controlplane/internal/server/servertest"
)

// receiver is a webhook receiver in this process: it holds requests while
// held, answers failing while failing, and keeps what it accepted.
type receiver struct {
	*httptest.Server
	mu       sync.Mutex
	held     chan struct{} // closed: requests go on
	failing  bool
	seen     int
	accepted []received
}

type received struct {
	header http.Header
	body   []byte
}

func newReceiver(t *testing.T, held, failing bool) *receiver {
	rx := &receiver{held: make(chan struct{}), failing: failing}
	if !held {
		close(rx.held)
	}
	rx.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rx.mu.Lock()
		rx.seen++
		rx.mu.Unlock()
		select {
		case <-rx.held:
		case <-r.Context().Done():
			return
		}
		body, _ := io.ReadAll(r.Body)
		rx.mu.Lock()
		defer rx.mu.Unlock()
		if rx.failing {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		rx.accepted = append(rx.accepted, received{header: r.Header.Clone(), body: body})
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(func() {
		rx.release()
		rx.Close()
	})
	return rx
}

func (rx *receiver) release() {
	rx.mu.Lock()
	defer rx.mu.Unlock()
	select {
	case <-rx.held:
	default:
		close(rx.held)
	}
}

func (rx *receiver) setFailing(f bool) {
	rx.mu.Lock()
	rx.failing = f
	rx.mu.Unlock()
}

func (rx *receiver) snapshot() (seen int, accepted []received) {
	rx.mu.Lock()
	defer rx.mu.Unlock()
	return rx.seen, append([]received(nil), rx.accepted...)
}

// fastRetries shortens the notifier's backoff for tests.
func fastRetries() servertest.Option {
	return servertest.WithServerOptions(server.WithNotifyConfig(func(c *notify.Config) {
		c.MinBackoff, c.MaxBackoff, c.PollInterval = 20*time.Millisecond, 100*time.Millisecond, 50*time.Millisecond
	}))
}

func (h *harness) notifications() flotillav1.NotificationServiceClient {
	return flotillav1.NewNotificationServiceClient(h.dial(h.serverTLS()))
}

func webhookSubscription(url string, events ...flotillav1.NotificationEventType) *flotillav1.CreateSubscriptionRequest {
	return &flotillav1.CreateSubscriptionRequest{Name: "ops", Events: events,
		Sink: &flotillav1.Sink{Kind: &flotillav1.Sink_Webhook{Webhook: &flotillav1.WebhookSink{Url: url + "/hooks/flotilla?key=k3y"}}}}
}

// TestNotificationsDoNotBlockRollouts: a rollout started and aborted while
// its subscriber's sink holds every request reaches its final state; once
// the sink answers, it receives both events, in order, signed with the
// generated secret. The API is admin only, never returns the secret or the
// URL, and the audit trail does not hold them either.
func TestNotificationsDoNotBlockRollouts(t *testing.T) {
	h := start(t, fastRetries())
	rx := newReceiver(t, true, false)
	api, admin := h.notifications(), h.operatorCtx(h.admin)
	req := webhookSubscription(rx.URL, flotillav1.NotificationEventType_NOTIFICATION_EVENT_TYPE_ROLLOUT_STARTED,
		flotillav1.NotificationEventType_NOTIFICATION_EVENT_TYPE_ROLLOUT_FAILED)
	if _, err := api.CreateSubscription(h.operatorCtx(h.apiToken("operator")), req); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("operator CreateSubscription: %v, want PermissionDenied", err)
	}
	created, err := api.CreateSubscription(admin, req)
	if err != nil {
		t.Fatalf("CreateSubscription: %v", err)
	}
	secret := created.GetGeneratedSecret()
	list, err := api.ListSubscriptions(admin, &flotillav1.ListSubscriptionsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	shown := protojson.Format(list)
	if strings.Contains(shown, secret[len(notify.SecretPrefix):]) || strings.Contains(shown, "k3y") || !strings.Contains(shown, notify.Fingerprint(secret)) {
		t.Fatalf("ListSubscriptions shows a secret or lacks the fingerprint: %s", shown)
	}

	id := startAndAbortRollout(t, h)
	if seen, accepted := rx.snapshot(); len(accepted) != 0 || seen > 1 {
		t.Fatalf("the sink saw %d requests and accepted %d while held", seen, len(accepted))
	}
	rx.release()
	var accepted []received
	eventually(t, 30*time.Second, "both events delivered", func() bool {
		_, accepted = rx.snapshot()
		return len(accepted) >= 2
	})
	var types []string
	for _, r := range accepted {
		if err := notify.Verify(secret, r.header.Get(notify.HeaderID), r.header.Get(notify.HeaderTimestamp),
			r.header.Get(notify.HeaderSignature), r.body, time.Now(), time.Hour); err != nil {
			t.Fatalf("signature: %v", err)
		}
		var b notify.Body
		if err := json.Unmarshal(r.body, &b); err != nil || b.Data.Subject["rollout_id"] != id {
			t.Fatalf("body %s: %v", r.body, err)
		}
		types = append(types, b.Type)
		if b.Type == notify.TypeRolloutFailed && !strings.Contains(b.Data.Reason, "maintenance window closed") {
			t.Fatalf("rollout.failed reason %q lacks the abort's reason", b.Data.Reason)
		}
	}
	if strings.Join(types, ",") != "rollout.started,rollout.failed" {
		t.Fatalf("events %v, want started then failed", types)
	}
	audit, err := flotillav1.NewAdminServiceClient(h.dial(h.serverTLS())).ListAuditEvents(admin,
		&flotillav1.ListAuditEventsRequest{Method: flotillav1.NotificationService_CreateSubscription_FullMethodName})
	if err != nil || len(audit.GetEvents()) != 2 {
		t.Fatalf("audit of CreateSubscription: %v, %v; want the refused and the accepted call", audit, err)
	}
	if text := protojson.Format(audit); strings.Contains(text, "k3y") {
		t.Fatalf("the audit trail holds the sink's URL: %s", text)
	}
}

// startAndAbortRollout starts a rollout on a host that never connects (it
// waits in PREPARING), aborts it, and waits for its final state.
func startAndAbortRollout(t *testing.T, h *harness) string {
	t.Helper()
	if _, _, err := h.register(h.joinToken(&flotillav1.CreateJoinTokenRequest{}), "web-1", map[string]string{"role": "web"}); err != nil {
		t.Fatal(err)
	}
	rollouts, admin := flotillav1.NewRolloutServiceClient(h.dial(h.serverTLS())), h.operatorCtx(h.admin)
	svc := &flotillav1.Service{Name: "web", Container: "app", Selector: "role=web"}
	if _, err := rollouts.PutService(admin, &flotillav1.PutServiceRequest{Service: svc}); err != nil {
		t.Fatal(err)
	}
	started, err := rollouts.StartRollout(admin, &flotillav1.StartRolloutRequest{Service: "web", Image: "registry.example/app:2.0",
		Strategy: &flotillav1.RolloutStrategy{OfflineHosts: flotillav1.OfflinePolicy_OFFLINE_POLICY_WAIT}})
	if err != nil {
		t.Fatalf("StartRollout: %v", err)
	}
	id := started.GetRollout().GetId()
	if _, err := rollouts.AbortRollout(admin, &flotillav1.AbortRolloutRequest{RolloutId: id, Reason: "maintenance window closed"}); err != nil {
		t.Fatalf("AbortRollout: %v", err)
	}
	eventually(t, 30*time.Second, "the rollout aborted", func() bool {
		got, err := rollouts.GetRollout(admin, &flotillav1.GetRolloutRequest{RolloutId: id})
		return err == nil && got.GetRollout().GetState() == flotillav1.RolloutState_ROLLOUT_STATE_ABORTED
	})
	return id
}

// TestNotificationsSurviveRestart: a test event the sink refuses stays in
// the outbox across a restart of the control plane and is delivered by the
// next one, under the same webhook-id.
func TestNotificationsSurviveRestart(t *testing.T) {
	h := start(t, fastRetries())
	rx := newReceiver(t, false, true)
	api, admin := h.notifications(), h.operatorCtx(h.admin)
	created, err := api.CreateSubscription(admin, webhookSubscription(rx.URL,
		flotillav1.NotificationEventType_NOTIFICATION_EVENT_TYPE_AGENT_LOST))
	if err != nil {
		t.Fatal(err)
	}
	sub := created.GetSubscription().GetId()
	sent, err := api.TestSubscription(admin, &flotillav1.TestSubscriptionRequest{SubscriptionId: sub})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "a refused attempt", func() bool {
		log, err := api.ListDeliveryAttempts(admin, &flotillav1.ListDeliveryAttemptsRequest{SubscriptionId: sub})
		return err == nil && len(log.GetAttempts()) > 0 && log.GetAttempts()[0].GetOutcome() == "retry" && log.GetPending() == 1
	})

	h = h.restart()
	api, admin = h.notifications(), h.operatorCtx(h.admin)
	rx.setFailing(false)
	var accepted []received
	eventually(t, 30*time.Second, "the test event delivered after the restart", func() bool {
		_, accepted = rx.snapshot()
		return len(accepted) > 0
	})
	if got := accepted[0].header.Get(notify.HeaderID); got != sent.GetEventId() {
		t.Fatalf("webhook-id %s, want the test's event ID %s", got, sent.GetEventId())
	}
	eventually(t, 30*time.Second, "the delivery logged", func() bool {
		log, err := api.ListDeliveryAttempts(admin, &flotillav1.ListDeliveryAttemptsRequest{SubscriptionId: sub})
		return err == nil && log.GetPending() == 0 && log.GetAttempts()[0].GetOutcome() == "delivered"
	})
}

// TestNotificationsAgentLostAndBack: an agent that goes silent is told
// lost, and back once it reconnects, through the fleet registry's hook.
func TestNotificationsAgentLostAndBack(t *testing.T) {
	h := start(t, lostAfter(time.Second), fastRetries())
	rx := newReceiver(t, false, false)
	if _, err := h.notifications().CreateSubscription(h.operatorCtx(h.admin), webhookSubscription(rx.URL,
		flotillav1.NotificationEventType_NOTIFICATION_EVENT_TYPE_AGENT_LOST,
		flotillav1.NotificationEventType_NOTIFICATION_EVENT_TYPE_AGENT_BACK)); err != nil {
		t.Fatal(err)
	}
	a := h.scriptedFleet("nt", 1, true)[0]
	a.drop()
	types := func() []string {
		_, accepted := rx.snapshot()
		var out []string
		for _, r := range accepted {
			var b notify.Body
			if err := json.Unmarshal(r.body, &b); err != nil || b.Data.Subject["agent_id"] != a.id {
				t.Fatalf("body %s: %v", r.body, err)
			}
			out = append(out, b.Type)
		}
		return out
	}
	eventually(t, 30*time.Second, "agent.lost delivered", func() bool { return len(types()) == 1 })
	a.reconnect(h)
	eventually(t, 30*time.Second, "agent.back delivered", func() bool { return len(types()) == 2 })
	if got := strings.Join(types(), ","); got != "agent.lost,agent.back" {
		t.Fatalf("events %s, want agent.lost then agent.back", got)
	}
}
