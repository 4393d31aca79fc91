package store

import (
	"context"
	"slices"
	"time"
)

// Sink kinds of a notification subscription.
const (
	SinkWebhook = "webhook"
	SinkSlack   = "slack"
)

// Delivery states. A pending delivery is retried until it is delivered or
// given up (dead); only pending ones are ever claimed.
const (
	DeliveryPending   = "pending"
	DeliveryDelivered = "delivered"
	DeliveryDead      = "dead"
)

// Outcomes of a delivery attempt, as the delivery log shows them.
const (
	AttemptDelivered = "delivered"
	AttemptRetry     = "retry"
	AttemptDead      = "dead"
)

// MaxAttemptsKept is how many delivery attempts the log keeps per
// subscription; older ones are pruned as new ones are written.
const MaxAttemptsKept = 200

// Subscription sends a set of event types to one sink. URL and Secrets
// are secrets: the API never returns them and nothing logs them.
type Subscription struct {
	ID   string
	Name string
	// Events are the event types (e.g. "rollout.failed") it receives.
	Events   []string
	SinkKind string
	URL      string
	// Secrets sign webhook requests ("whsec_<base64>"); empty for Slack.
	Secrets   []string
	Paused    bool
	CreatedAt time.Time
	CreatedBy string
	UpdatedAt time.Time
}

// Wants reports whether the subscription queues events of type t.
func (s Subscription) Wants(t string) bool {
	return !s.Paused && slices.Contains(s.Events, t)
}

// NotificationEvent is one event written to the outbox.
type NotificationEvent struct {
	// ID is the event's idempotency key (the webhook-id): publishing an
	// ID again queues nothing.
	ID   string
	Type string
	// OrderKey groups events whose order a sink must see kept (e.g. the
	// rollout's ID): a delivery is not attempted while an earlier one of
	// the same subscription and key is pending. Empty: no order.
	OrderKey   string
	OccurredAt time.Time
	// Body is the JSON payload sent to webhooks.
	Body []byte
	// Only, when set, queues the event for this subscription alone,
	// whatever its filter (a test send).
	Only string
}

// Delivery is one event on its way to one subscription.
type Delivery struct {
	ID             int64
	EventID        string
	EventType      string
	OrderKey       string
	OccurredAt     time.Time
	Body           []byte
	SubscriptionID string
	// Attempts made before this claim.
	Attempts  int
	CreatedAt time.Time
}

// DeliveryClaim asks for due deliveries: pending, due by Now, not claimed
// by a live claim, not behind an earlier pending delivery of the same
// subscription and order key, and of no subscription in Exclude. They are
// claimed for Holder until Until (a claim left by a stopped process
// lapses then), oldest first, at most Limit.
type DeliveryClaim struct {
	Holder  string
	Now     time.Time
	Until   time.Time
	Limit   int
	Exclude []string
}

// DeliveryAttempt is one entry of a subscription's delivery log.
type DeliveryAttempt struct {
	DeliveryID     int64
	SubscriptionID string
	EventID        string
	EventType      string
	Attempt        int
	At             time.Time
	Outcome        string
	HTTPStatus     int
	Error          string
	Duration       time.Duration
}

// DeliveryResult is the outcome of one claimed delivery's attempt: State
// is the delivery's new state and, while pending, NextAttemptAt when it is
// due again. The write is refused with ErrFenced when Holder's claim was
// lost (it lapsed and another holder claimed the delivery).
type DeliveryResult struct {
	ID            int64
	Holder        string
	State         string
	NextAttemptAt time.Time
	Attempt       DeliveryAttempt
}

// NotificationQueue describes the pending deliveries.
type NotificationQueue struct {
	Pending int
	// Oldest is when the oldest pending delivery was queued (zero when
	// none is).
	Oldest time.Time
}

// NotificationStore keeps notification subscriptions and the outbox of
// their deliveries. It is part of Store.
type NotificationStore interface {
	// CreateSubscription stores a new subscription; an existing ID
	// returns ErrConflict.
	CreateSubscription(ctx context.Context, s Subscription) error
	// GetSubscription returns a subscription or ErrNotFound.
	GetSubscription(ctx context.Context, id string) (Subscription, error)
	// ListSubscriptions returns every subscription by ID.
	ListSubscriptions(ctx context.Context) ([]Subscription, error)
	// UpdateSubscription replaces a subscription's name, events, sink,
	// secrets, pause flag and updated time; ErrNotFound when it is gone.
	UpdateSubscription(ctx context.Context, s Subscription) error
	// DeleteSubscription removes a subscription, its deliveries and its
	// log; ErrNotFound when it is gone.
	DeleteSubscription(ctx context.Context, id string) error
	// PublishNotification writes the event and, in the same transaction,
	// one pending delivery (due at once) for every subscription that
	// wants it (Subscription.Wants, or ev.Only). It returns how many it
	// queued; an event ID already published queues nothing and returns 0.
	PublishNotification(ctx context.Context, ev NotificationEvent) (int, error)
	// ClaimDeliveries claims the deliveries c selects (see DeliveryClaim).
	ClaimDeliveries(ctx context.Context, c DeliveryClaim) ([]Delivery, error)
	// FinishDelivery records an attempt and the delivery's new state,
	// releases the claim and prunes the subscription's log to
	// MaxAttemptsKept (see DeliveryResult).
	FinishDelivery(ctx context.Context, r DeliveryResult) error
	// ReleaseDeliveries gives back holder's claims on the pending
	// deliveries ids (claimed but not attempted, e.g. at shutdown): they
	// may be claimed again at once, with no attempt counted.
	ReleaseDeliveries(ctx context.Context, holder string, ids []int64) error
	// ListDeliveryAttempts returns a subscription's latest attempts,
	// newest first, at most limit.
	ListDeliveryAttempts(ctx context.Context, subscriptionID string, limit int) ([]DeliveryAttempt, error)
	// PendingDeliveries counts a subscription's pending deliveries (all
	// subscriptions' when subscriptionID is "").
	PendingDeliveries(ctx context.Context, subscriptionID string) (NotificationQueue, error)
	// PruneNotifications deletes delivered and dead deliveries created
	// before, and the events left without a delivery that occurred
	// before; it returns how many deliveries it deleted.
	PruneNotifications(ctx context.Context, before time.Time) (int, error)
}
