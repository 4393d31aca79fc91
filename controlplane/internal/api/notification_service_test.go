package api_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/controlplane/internal/api"
	"flotilla.dev/controlplane/internal/notify"
	"flotilla.dev/controlplane/internal/store"
	"flotilla.dev/controlplane/internal/store/sqlite"
)

type tester struct{ sent []string }

func (t *tester) Test(_ context.Context, id, _ string) (string, error) {
	t.sent = append(t.sent, id)
	return "ev-test", nil
}

func (t *tester) Subscribed(store.Subscription) {}

func newNotificationService(t *testing.T) *api.NotificationService {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "flotilla.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	svc, err := api.NewNotificationService(api.NotificationServiceConfig{Store: st, Notifier: &tester{}})
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

var (
	lost  = flotillav1.NotificationEventType_NOTIFICATION_EVENT_TYPE_AGENT_LOST
	valid = "whsec_" + strings.Repeat("QUJD", 8)
)

func webhook(url string, secrets ...string) *flotillav1.Sink {
	return &flotillav1.Sink{Kind: &flotillav1.Sink_Webhook{Webhook: &flotillav1.WebhookSink{Url: url, Secrets: secrets}}}
}

func slack(url string) *flotillav1.Sink {
	return &flotillav1.Sink{Kind: &flotillav1.Sink_Slack{Slack: &flotillav1.SlackSink{WebhookUrl: url}}}
}

func TestCreateSubscriptionValidates(t *testing.T) {
	svc := newNotificationService(t)
	ok := webhook("https://hooks.example.com/in")
	tests := []struct {
		name  string
		req   *flotillav1.CreateSubscriptionRequest
		field string
	}{
		{"no name", &flotillav1.CreateSubscriptionRequest{Events: []flotillav1.NotificationEventType{lost}, Sink: ok}, "name"},
		{"no events", &flotillav1.CreateSubscriptionRequest{Name: "ops", Sink: ok}, "events"},
		{"unspecified event", &flotillav1.CreateSubscriptionRequest{Name: "ops", Events: []flotillav1.NotificationEventType{lost, 0}, Sink: ok}, "events[1]"},
		{"unknown event", &flotillav1.CreateSubscriptionRequest{Name: "ops", Events: []flotillav1.NotificationEventType{99}, Sink: ok}, "events[0]"},
		{"no sink", &flotillav1.CreateSubscriptionRequest{Name: "ops", Events: []flotillav1.NotificationEventType{lost}}, "sink"},
		{"relative url", &flotillav1.CreateSubscriptionRequest{Name: "ops", Events: []flotillav1.NotificationEventType{lost}, Sink: webhook("/in")}, "sink.webhook.url"},
		{"ftp url", &flotillav1.CreateSubscriptionRequest{Name: "ops", Events: []flotillav1.NotificationEventType{lost}, Sink: webhook("ftp://h/in")}, "sink.webhook.url"},
		{"bad secret", &flotillav1.CreateSubscriptionRequest{Name: "ops", Events: []flotillav1.NotificationEventType{lost},
			Sink: webhook("https://h/in", valid, "whsec_short")}, "sink.webhook.secrets[1]"},
		{"too many secrets", &flotillav1.CreateSubscriptionRequest{Name: "ops", Events: []flotillav1.NotificationEventType{lost},
			Sink: webhook("https://h/in", valid, valid, valid, valid, valid, valid)}, "sink.webhook.secrets"},
		{"slack over http", &flotillav1.CreateSubscriptionRequest{Name: "ops", Events: []flotillav1.NotificationEventType{lost},
			Sink: slack("http://hooks.slack.com/services/T/B/x")}, "sink.slack.webhook_url"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := svc.CreateSubscription(context.Background(), tt.req)
			if status.Code(err) != codes.InvalidArgument || !strings.HasPrefix(status.Convert(err).Message(), tt.field+":") {
				t.Fatalf("error = %v, want InvalidArgument naming %s", err, tt.field)
			}
			if strings.Contains(status.Convert(err).Message(), "hooks.slack.com") {
				t.Fatalf("error echoes the URL: %v", err)
			}
		})
	}
}

// A webhook created without a secret gets one, shown once; what the API
// returns names secrets and the Slack URL by fingerprint only; a rotation
// replaces the secrets; a sink cannot change kind.
func TestSubscriptionLifecycle(t *testing.T) {
	svc, ctx := newNotificationService(t), context.Background()
	created, err := svc.CreateSubscription(ctx, &flotillav1.CreateSubscriptionRequest{Name: "ops",
		Events: []flotillav1.NotificationEventType{lost, lost}, Sink: webhook("https://hooks.example.com/in?token=t0k")})
	if err != nil {
		t.Fatal(err)
	}
	secret, sub := created.GetGeneratedSecret(), created.GetSubscription()
	if notify.ValidateSecret(secret) != nil || len(sub.GetSecrets()) != 1 || sub.GetSecrets()[0].GetFingerprint() != notify.Fingerprint(secret) ||
		sub.GetEndpoint() != "https://hooks.example.com/…" || len(sub.GetEvents()) != 1 {
		t.Fatalf("created %v with secret %q", sub, secret)
	}
	next, err := notify.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	updated, err := svc.UpdateSubscription(ctx, &flotillav1.UpdateSubscriptionRequest{SubscriptionId: sub.GetId(),
		Events: []flotillav1.NotificationEventType{lost}, Sink: webhook("https://hooks.example.com/in", secret, next), Paused: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := updated.GetSubscription(); len(got.GetSecrets()) != 2 || got.GetSecrets()[1].GetFingerprint() != notify.Fingerprint(next) || !got.GetPaused() {
		t.Fatalf("after rotation: %v", got)
	}
	if _, err := svc.UpdateSubscription(ctx, &flotillav1.UpdateSubscriptionRequest{SubscriptionId: sub.GetId(),
		Events: []flotillav1.NotificationEventType{lost}, Sink: slack("https://hooks.slack.com/services/T/B/x")}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("kind change: %v, want InvalidArgument", err)
	}
	sl, err := svc.CreateSubscription(ctx, &flotillav1.CreateSubscriptionRequest{Name: "chat",
		Events: []flotillav1.NotificationEventType{lost}, Sink: slack("https://hooks.slack.com/services/T/B/s3cr3t")})
	if err != nil {
		t.Fatal(err)
	}
	list, err := svc.ListSubscriptions(ctx, &flotillav1.ListSubscriptionsRequest{})
	if err != nil || len(list.GetSubscriptions()) != 2 {
		t.Fatalf("list = %v, %v", list, err)
	}
	text := protojson.Format(list)
	for _, leak := range []string{"t0k", "s3cr3t", secret[len(notify.SecretPrefix):], next[len(notify.SecretPrefix):]} {
		if strings.Contains(text, leak) {
			t.Fatalf("ListSubscriptions shows %q: %s", leak, text)
		}
	}
	if sl.GetSubscription().GetUrlFingerprint() != notify.Fingerprint("https://hooks.slack.com/services/T/B/s3cr3t") {
		t.Fatalf("slack subscription %v lacks its URL's fingerprint", sl.GetSubscription())
	}
	if _, err := svc.DeleteSubscription(ctx, &flotillav1.DeleteSubscriptionRequest{SubscriptionId: sub.GetId()}); err != nil {
		t.Fatal(err)
	}
	for _, call := range []func() error{
		func() error {
			_, err := svc.GetSubscription(ctx, &flotillav1.GetSubscriptionRequest{SubscriptionId: sub.GetId()})
			return err
		},
		func() error {
			_, err := svc.TestSubscription(ctx, &flotillav1.TestSubscriptionRequest{SubscriptionId: sub.GetId()})
			return err
		},
		func() error {
			_, err := svc.DeleteSubscription(ctx, &flotillav1.DeleteSubscriptionRequest{SubscriptionId: sub.GetId()})
			return err
		},
	} {
		if err := call(); status.Code(err) != codes.NotFound {
			t.Fatalf("on a deleted subscription: %v, want NotFound", err)
		}
	}
	if _, err := svc.ListDeliveryAttempts(ctx, &flotillav1.ListDeliveryAttemptsRequest{SubscriptionId: sl.GetSubscription().GetId(),
		PageSize: 501}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("page_size 501: %v, want InvalidArgument", err)
	}
}
