package api

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/controlplane/internal/ids"
	"flotilla.dev/controlplane/internal/notify"
	"flotilla.dev/controlplane/internal/store"
)

// Limits of the notification API.
const (
	maxSinkURL             = 2048
	maxSigningSecrets      = 5
	defaultDeliveryLogPage = 50
	maxDeliveryLogPage     = 500
)

// NotificationTester sends a test event through the outbox
// (notify.Notifier), and is told of each subscription created, so that
// its delivery series exist from the start.
type NotificationTester interface {
	Test(ctx context.Context, subscriptionID, by string) (string, error)
	Subscribed(sub store.Subscription)
}

// NotificationServiceConfig configures the notification service.
type NotificationServiceConfig struct {
	Store    store.NotificationStore
	Notifier NotificationTester
	Logger   *zap.Logger
	Now      func() time.Time
	// NewID makes subscription IDs; ids.New when nil.
	NewID func(prefix string) (string, error)
}

// NotificationService implements flotilla.v1.NotificationService. It never
// returns nor logs a secret: a sink's URL is shown as its scheme and host,
// signing secrets and Slack URLs by fingerprint.
type NotificationService struct {
	flotillav1.UnimplementedNotificationServiceServer
	cfg NotificationServiceConfig
	log *zap.Logger
}

// NewNotificationService validates cfg and returns the service.
func NewNotificationService(cfg NotificationServiceConfig) (*NotificationService, error) {
	if cfg.Store == nil || cfg.Notifier == nil {
		return nil, errors.New("api: notification service needs Store and Notifier")
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.NewID == nil {
		cfg.NewID = ids.New
	}
	return &NotificationService{cfg: cfg, log: cfg.Logger}, nil
}

// storeError maps a store failure: NotFound with the ID, else Unavailable
// (logged, details withheld).
func (s *NotificationService) storeError(what, id string, err error) error {
	if errors.Is(err, store.ErrNotFound) {
		return status.Errorf(codes.NotFound, "subscription %s not found", id)
	}
	s.log.Error(what+" failed", zap.String("subscription_id", id), zap.Error(err))
	return status.Errorf(codes.Unavailable, "%s failed: store unavailable; retry", what)
}

// CreateSubscription implements NotificationService.CreateSubscription.
func (s *NotificationService) CreateSubscription(ctx context.Context, req *flotillav1.CreateSubscriptionRequest) (*flotillav1.CreateSubscriptionResponse, error) {
	if err := validateName("name", req.GetName(), apiTokenName, "letters, digits, '_', '.' and '-'"); err != nil {
		return nil, err
	}
	events, err := eventTypes("events", req.GetEvents())
	if err != nil {
		return nil, err
	}
	sub, generated, err := sinkOf("sink", req.GetSink(), true)
	if err != nil {
		return nil, err
	}
	if sub.ID, err = s.cfg.NewID("ns-"); err != nil {
		return nil, err
	}
	now := s.cfg.Now()
	sub.Name, sub.Events, sub.CreatedAt, sub.UpdatedAt, sub.CreatedBy = req.GetName(), events, now, now, caller(ctx)
	if err := s.cfg.Store.CreateSubscription(ctx, sub); err != nil {
		return nil, s.storeError("storing a subscription", sub.ID, err)
	}
	s.cfg.Notifier.Subscribed(sub)
	s.log.Info("notification subscription created", zap.String("subscription_id", sub.ID), zap.String("name", sub.Name),
		zap.String("sink", sub.SinkKind), zap.Strings("events", events), zap.String("created_by", sub.CreatedBy))
	return &flotillav1.CreateSubscriptionResponse{Subscription: subscriptionToProto(sub), GeneratedSecret: generated}, nil
}

// GetSubscription implements NotificationService.GetSubscription.
func (s *NotificationService) GetSubscription(ctx context.Context, req *flotillav1.GetSubscriptionRequest) (*flotillav1.GetSubscriptionResponse, error) {
	sub, err := s.get(ctx, req.GetSubscriptionId())
	if err != nil {
		return nil, err
	}
	return &flotillav1.GetSubscriptionResponse{Subscription: subscriptionToProto(sub)}, nil
}

func (s *NotificationService) get(ctx context.Context, id string) (store.Subscription, error) {
	if id == "" {
		return store.Subscription{}, invalid("subscription_id", "required")
	}
	sub, err := s.cfg.Store.GetSubscription(ctx, id)
	if err != nil {
		return sub, s.storeError("reading a subscription", id, err)
	}
	return sub, nil
}

// ListSubscriptions implements NotificationService.ListSubscriptions.
func (s *NotificationService) ListSubscriptions(ctx context.Context, _ *flotillav1.ListSubscriptionsRequest) (*flotillav1.ListSubscriptionsResponse, error) {
	subs, err := s.cfg.Store.ListSubscriptions(ctx)
	if err != nil {
		return nil, s.storeError("listing subscriptions", "", err)
	}
	resp := &flotillav1.ListSubscriptionsResponse{}
	for _, sub := range subs {
		resp.Subscriptions = append(resp.Subscriptions, subscriptionToProto(sub))
	}
	return resp, nil
}

// UpdateSubscription implements NotificationService.UpdateSubscription.
func (s *NotificationService) UpdateSubscription(ctx context.Context, req *flotillav1.UpdateSubscriptionRequest) (*flotillav1.UpdateSubscriptionResponse, error) {
	events, err := eventTypes("events", req.GetEvents())
	if err != nil {
		return nil, err
	}
	sub, err := s.get(ctx, req.GetSubscriptionId())
	if err != nil {
		return nil, err
	}
	if req.GetSink() != nil {
		next, _, err := sinkOf("sink", req.GetSink(), false)
		if err != nil {
			return nil, err
		}
		if next.SinkKind != sub.SinkKind {
			return nil, invalid("sink", "a %s subscription cannot become a %s one; create a new subscription", sub.SinkKind, next.SinkKind)
		}
		sub.URL = next.URL
		if len(next.Secrets) > 0 {
			sub.Secrets = next.Secrets
		}
	}
	sub.Events, sub.Paused, sub.UpdatedAt = events, req.GetPaused(), s.cfg.Now()
	if err := s.cfg.Store.UpdateSubscription(ctx, sub); err != nil {
		return nil, s.storeError("updating a subscription", sub.ID, err)
	}
	s.log.Info("notification subscription updated", zap.String("subscription_id", sub.ID), zap.Strings("events", events),
		zap.Bool("paused", sub.Paused), zap.Int("secrets", len(sub.Secrets)), zap.String("by", caller(ctx)))
	return &flotillav1.UpdateSubscriptionResponse{Subscription: subscriptionToProto(sub)}, nil
}

// DeleteSubscription implements NotificationService.DeleteSubscription.
func (s *NotificationService) DeleteSubscription(ctx context.Context, req *flotillav1.DeleteSubscriptionRequest) (*flotillav1.DeleteSubscriptionResponse, error) {
	id := req.GetSubscriptionId()
	if id == "" {
		return nil, invalid("subscription_id", "required")
	}
	if err := s.cfg.Store.DeleteSubscription(ctx, id); err != nil {
		return nil, s.storeError("deleting a subscription", id, err)
	}
	s.log.Info("notification subscription deleted", zap.String("subscription_id", id), zap.String("by", caller(ctx)))
	return &flotillav1.DeleteSubscriptionResponse{}, nil
}

// TestSubscription implements NotificationService.TestSubscription.
func (s *NotificationService) TestSubscription(ctx context.Context, req *flotillav1.TestSubscriptionRequest) (*flotillav1.TestSubscriptionResponse, error) {
	sub, err := s.get(ctx, req.GetSubscriptionId())
	if err != nil {
		return nil, err
	}
	id, err := s.cfg.Notifier.Test(ctx, sub.ID, caller(ctx))
	if err != nil {
		return nil, s.storeError("queuing a test notification", sub.ID, err)
	}
	return &flotillav1.TestSubscriptionResponse{EventId: id}, nil
}

// ListDeliveryAttempts implements NotificationService.ListDeliveryAttempts.
func (s *NotificationService) ListDeliveryAttempts(ctx context.Context, req *flotillav1.ListDeliveryAttemptsRequest) (*flotillav1.ListDeliveryAttemptsResponse, error) {
	size := int(req.GetPageSize())
	switch {
	case size < 0 || size > maxDeliveryLogPage:
		return nil, invalid("page_size", "%d is outside 0..%d", size, maxDeliveryLogPage)
	case size == 0:
		size = defaultDeliveryLogPage
	}
	sub, err := s.get(ctx, req.GetSubscriptionId())
	if err != nil {
		return nil, err
	}
	log, err := s.cfg.Store.ListDeliveryAttempts(ctx, sub.ID, size)
	if err != nil {
		return nil, s.storeError("reading the delivery log", sub.ID, err)
	}
	q, err := s.cfg.Store.PendingDeliveries(ctx, sub.ID)
	if err != nil {
		return nil, s.storeError("counting pending deliveries", sub.ID, err)
	}
	resp := &flotillav1.ListDeliveryAttemptsResponse{Pending: int32(q.Pending)}
	for _, a := range log {
		resp.Attempts = append(resp.Attempts, &flotillav1.DeliveryAttempt{
			EventId: a.EventID, EventType: a.EventType, Attempt: int32(a.Attempt), At: ts(a.At), Outcome: a.Outcome,
			HttpStatus: int32(a.HTTPStatus), Error: a.Error, Duration: durationpb.New(a.Duration),
		})
	}
	return resp, nil
}

// eventTypes maps an event filter to the stored type names: at least one,
// none unspecified or unknown, duplicates dropped.
func eventTypes(field string, in []flotillav1.NotificationEventType) ([]string, error) {
	if len(in) == 0 {
		return nil, invalid(field, "at least one event type is required")
	}
	var out []string
	for i, e := range in {
		if e <= 0 || int(e) > len(notify.Types) {
			return nil, invalid(fmt.Sprintf("%s[%d]", field, i), "%s is not an event type", e)
		}
		if t := notify.Types[e-1]; !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return out, nil
}

// eventEnum is the API's value of a stored event type.
func eventEnum(t string) flotillav1.NotificationEventType {
	return flotillav1.NotificationEventType(slices.Index(notify.Types, t) + 1)
}

// sinkOf validates a sink. A webhook created without a secret gets one,
// returned as generated (create only).
func sinkOf(field string, sink *flotillav1.Sink, create bool) (sub store.Subscription, generated string, err error) {
	switch k := sink.GetKind().(type) {
	case *flotillav1.Sink_Webhook:
		sub.SinkKind, sub.URL = store.SinkWebhook, k.Webhook.GetUrl()
		if err := validateSinkURL(field+".webhook.url", sub.URL, false); err != nil {
			return sub, "", err
		}
		if len(k.Webhook.GetSecrets()) > maxSigningSecrets {
			return sub, "", invalid(field+".webhook.secrets", "%d given, at most %d", len(k.Webhook.GetSecrets()), maxSigningSecrets)
		}
		for i, secret := range k.Webhook.GetSecrets() {
			if err := notify.ValidateSecret(secret); err != nil {
				return sub, "", invalid(fmt.Sprintf("%s.webhook.secrets[%d]", field, i), "%v", err)
			}
		}
		sub.Secrets = slices.Clone(k.Webhook.GetSecrets())
		if len(sub.Secrets) == 0 && create {
			if generated, err = notify.NewSecret(); err != nil {
				return sub, "", err
			}
			sub.Secrets = []string{generated}
		}
	case *flotillav1.Sink_Slack:
		sub.SinkKind, sub.URL = store.SinkSlack, k.Slack.GetWebhookUrl()
		if err := validateSinkURL(field+".slack.webhook_url", sub.URL, true); err != nil {
			return sub, "", err
		}
	default:
		return sub, "", invalid(field, "required: a webhook or a slack sink")
	}
	return sub, generated, nil
}

// validateSinkURL checks a sink's URL: absolute, http(s) with a host, no
// fragment. A Slack URL must be https, except to a loopback address
// (tests and local relays). The URL is never echoed: it may be a secret.
func validateSinkURL(field, raw string, httpsOnly bool) error {
	if raw == "" {
		return invalid(field, "required")
	}
	if len(raw) > maxSinkURL {
		return invalid(field, "%d bytes, at most %d", len(raw), maxSinkURL)
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.Fragment != "" || (u.Scheme != "https" && u.Scheme != "http") {
		return invalid(field, "an absolute http or https URL with a host and no fragment is required")
	}
	if httpsOnly && u.Scheme != "https" && !isLoopback(u.Hostname()) {
		return invalid(field, "https is required")
	}
	return nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// subscriptionToProto describes a subscription without its secrets.
func subscriptionToProto(sub store.Subscription) *flotillav1.Subscription {
	out := &flotillav1.Subscription{
		Id: sub.ID, Name: sub.Name, SinkKind: sub.SinkKind, Endpoint: notify.Endpoint(sub.URL), Paused: sub.Paused,
		CreatedAt: ts(sub.CreatedAt), CreatedBy: sub.CreatedBy, UpdatedAt: ts(sub.UpdatedAt),
	}
	for _, t := range sub.Events {
		out.Events = append(out.Events, eventEnum(t))
	}
	for i, secret := range sub.Secrets {
		out.Secrets = append(out.Secrets, &flotillav1.SecretInfo{Index: int32(i), Fingerprint: notify.Fingerprint(secret)})
	}
	if sub.SinkKind == store.SinkSlack {
		out.UrlFingerprint = notify.Fingerprint(sub.URL)
	}
	return out
}
