package notify

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"go.uber.org/zap"

	"flotilla.dev/controlplane/internal/ids"
	"flotilla.dev/controlplane/internal/lease"
	"flotilla.dev/controlplane/internal/store"
	"flotilla.dev/pkg/run"
)

// maxRetryAfter caps a sink's Retry-After.
const maxRetryAfter = time.Hour

// emitQueue bounds the events Emit holds before the outbox write.
const emitQueue = 1024

// Config configures a Notifier. Zero durations and counts take the
// defaults in brackets.
type Config struct {
	// Store is the outbox. Required.
	Store store.NotificationStore
	// Holder names this process in its claims; a new holder ID when
	// empty. Replicas must have different ones.
	Holder string
	// Logger logs attempts (never a sink's URL or secrets).
	Logger *zap.Logger
	// Metrics records deliveries; nil records nothing.
	Metrics *Metrics
	// Now is the clock (time.Now).
	Now func() time.Time
	// Client sends the requests (an http.Client with AttemptTimeout that
	// does not follow redirects).
	Client *http.Client
	// PollInterval is how often due deliveries are looked for [1s];
	// a publish wakes the loop at once.
	PollInterval time.Duration
	// AttemptTimeout bounds one attempt [10s].
	AttemptTimeout time.Duration
	// ClaimTTL is how long a claim keeps a delivery from other holders
	// [5m]: a delivery claimed by a process that stopped is retried then.
	ClaimTTL time.Duration
	// PerSink bounds the attempts in flight per webhook subscription [4];
	// at most twice as many of its deliveries are claimed at once.
	PerSink int
	// MaxInFlight bounds the deliveries claimed by this process [64].
	MaxInFlight int
	// MinBackoff and MaxBackoff bound the wait before a retry when the
	// sink gives no Retry-After [5s, 1h]; it doubles per attempt.
	MinBackoff time.Duration
	MaxBackoff time.Duration
	// MaxAttempts and MaxAge: a delivery is given up (dead) after this
	// many attempts or this long after it was queued [25, 72h].
	MaxAttempts int
	MaxAge      time.Duration
	// SlackInterval is the least time between two messages to one Slack
	// channel [1s]; events in between are coalesced.
	SlackInterval time.Duration
	// Retention is how long finished deliveries are kept [7 days].
	Retention time.Duration
	// PublishTimeout bounds one outbox write [5s].
	PublishTimeout time.Duration
	// Jitter spreads a backoff (d/2 plus up to d/2 at random).
	Jitter func(d time.Duration) time.Duration
}

// Notifier publishes events to the outbox and delivers them.
type Notifier struct {
	cfg   Config
	log   *zap.Logger
	wake  chan struct{}
	emitq chan Event

	mu sync.Mutex
	// base is the context attempts run under: Run's, so that stopping
	// ends the attempts in flight (they are retried later); Background
	// when Dispatch is called without Run.
	base     context.Context
	lanes    map[string]*lane
	inflight int // claimed by this process, queued or being attempted
	wg       sync.WaitGroup
}

// lane is one subscription's claimed deliveries in this process.
type lane struct {
	sub       store.Subscription
	queue     []store.Delivery
	running   int
	slackNext time.Time // no Slack message before
}

// New fills cfg's defaults and returns a Notifier; Run delivers.
func New(cfg Config) (*Notifier, error) {
	if cfg.Store == nil {
		return nil, errors.New("notify: notifier needs a Store")
	}
	if cfg.Holder == "" {
		cfg.Holder = lease.NewHolderID()
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	fillDurations(&cfg)
	if cfg.Client == nil {
		cfg.Client = &http.Client{
			Timeout: cfg.AttemptTimeout,
			// A redirect is an answer: following it could send the
			// signed event somewhere the subscriber did not name.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	if cfg.Jitter == nil {
		cfg.Jitter = func(d time.Duration) time.Duration { return d/2 + rand.N(d/2+1) }
	}
	return &Notifier{
		cfg: cfg, log: cfg.Logger, wake: make(chan struct{}, 1), emitq: make(chan Event, emitQueue),
		lanes: make(map[string]*lane), base: context.Background(),
	}, nil
}

// fillDurations sets the defaults of cfg's zero durations and counts.
func fillDurations(cfg *Config) {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.PollInterval, time.Second)
	def(&cfg.AttemptTimeout, 10*time.Second)
	def(&cfg.ClaimTTL, 5*time.Minute)
	def(&cfg.MinBackoff, 5*time.Second)
	def(&cfg.MaxBackoff, time.Hour)
	def(&cfg.MaxAge, 72*time.Hour)
	def(&cfg.SlackInterval, time.Second)
	def(&cfg.Retention, 7*24*time.Hour)
	def(&cfg.PublishTimeout, 5*time.Second)
	if cfg.PerSink <= 0 {
		cfg.PerSink = 4
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 64
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 25
	}
}

// Publish writes ev to the outbox, with a delivery for every subscription
// that wants it, and wakes the delivery loop. It waits for the store only
// (at most PublishTimeout), never for a sink.
func (n *Notifier) Publish(ctx context.Context, ev Event) error {
	return n.publish(ctx, ev, "")
}

// Test queues a test event for one subscription, delivered like any other;
// it returns the event's ID.
func (n *Notifier) Test(ctx context.Context, subscriptionID, by string) (string, error) {
	id, err := ids.New("ev-")
	if err != nil {
		return "", err
	}
	ev := Event{
		ID: id, Type: TypeTest, Summary: "Flotilla test notification for subscription " + subscriptionID,
		Reason: "sent by " + by + " with TestSubscription", Subject: map[string]string{"subscription_id": subscriptionID},
	}
	return id, n.publish(ctx, ev, subscriptionID)
}

func (n *Notifier) publish(ctx context.Context, ev Event, only string) error {
	if err := n.complete(&ev); err != nil {
		return err
	}
	body, err := ev.encode()
	if err != nil {
		n.cfg.Metrics.publishFailed()
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, n.cfg.PublishTimeout)
	defer cancel()
	queued, err := n.cfg.Store.PublishNotification(ctx, store.NotificationEvent{
		ID: ev.ID, Type: ev.Type, OrderKey: ev.OrderKey, OccurredAt: ev.OccurredAt, Body: body, Only: only,
	})
	if err != nil {
		n.cfg.Metrics.publishFailed()
		n.log.Error("writing an event to the notification outbox failed", zap.String("event_id", ev.ID),
			zap.String("event_type", ev.Type), zap.Error(err))
		return fmt.Errorf("notify: publish %s: %w", ev.Type, err)
	}
	n.cfg.Metrics.publishedEvent(ev.Type)
	if queued > 0 {
		n.Wake()
	}
	return nil
}

// complete gives ev its ID and time when the source left them out.
func (n *Notifier) complete(ev *Event) error {
	if ev.ID == "" {
		id, err := ids.New("ev-")
		if err != nil {
			return err
		}
		ev.ID = id
	}
	if ev.OccurredAt.IsZero() {
		ev.OccurredAt = n.cfg.Now()
	}
	ev.OccurredAt = ev.OccurredAt.UTC()
	return nil
}

// Emit queues ev for the outbox without waiting (for callers that hold a
// lock); Run writes it. When the queue is full the event is dropped,
// counted and logged.
func (n *Notifier) Emit(ev Event) {
	if err := n.complete(&ev); err != nil {
		n.cfg.Metrics.publishFailed()
		return
	}
	select {
	case n.emitq <- ev:
	default:
		n.cfg.Metrics.publishFailed()
		n.log.Error("notification queue full; event dropped", zap.String("event_id", ev.ID), zap.String("event_type", ev.Type))
	}
}

// Wake makes the delivery loop look for due deliveries now.
func (n *Notifier) Wake() {
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// Run writes emitted events and delivers until ctx ends, then waits for
// the attempts in flight (each bounded by AttemptTimeout).
func (n *Notifier) Run(ctx context.Context) error {
	n.mu.Lock()
	n.base = ctx
	n.mu.Unlock()
	defer n.releaseQueued()
	defer n.wg.Wait()
	return run.All(ctx,
		run.Task{Name: "notify-emit", Run: n.runEmitter},
		run.Task{Name: "notify-deliver", Run: n.runDelivery},
		run.Task{Name: "notify-maintain", Run: func(ctx context.Context) error {
			return run.Every(ctx, 5*time.Second, n.maintain)
		}},
	)
}

// releaseQueued gives back the claims of the deliveries claimed but not
// attempted when Run stops, so that another process (or the next start)
// takes them at once rather than after ClaimTTL.
func (n *Notifier) releaseQueued() {
	n.mu.Lock()
	var queued []store.Delivery
	for _, l := range n.lanes {
		queued = append(queued, l.queue...)
		n.inflight -= len(l.queue)
		l.queue = nil
	}
	n.mu.Unlock()
	if len(queued) > 0 {
		n.release(queued)
	}
}

// runEmitter writes the emitted events to the outbox, in order, retrying a
// failed write while the process runs; when it stops, the events still
// queued get one write each.
func (n *Notifier) runEmitter(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			n.drainEmitted()
			return nil
		case ev := <-n.emitq:
			for n.Publish(ctx, ev) != nil {
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(time.Second):
				}
			}
		}
	}
}

// drainEmitted writes the events still queued, once each.
func (n *Notifier) drainEmitted() {
	for {
		select {
		case ev := <-n.emitq:
			_ = n.Publish(context.Background(), ev)
		default:
			return
		}
	}
}

// runDelivery claims and starts due deliveries every PollInterval and
// whenever woken.
func (n *Notifier) runDelivery(ctx context.Context) error {
	t := time.NewTicker(n.cfg.PollInterval)
	defer t.Stop()
	for {
		if _, err := n.Dispatch(ctx); err != nil && ctx.Err() == nil {
			n.log.Warn("claiming notification deliveries failed; retrying", zap.Error(err))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-n.wake:
		}
	}
}

// maintain refreshes the queue gauges, gives new subscriptions' delivery
// series their zeros (Subscribed does it at once for those made here) and
// prunes finished deliveries.
func (n *Notifier) maintain(ctx context.Context) {
	now := n.cfg.Now()
	if subs, err := n.cfg.Store.ListSubscriptions(ctx); err == nil {
		n.cfg.Metrics.subscriptions(subs)
	}
	q, err := n.cfg.Store.PendingDeliveries(ctx, "")
	if err != nil {
		return
	}
	n.cfg.Metrics.queue(q, now)
	if _, err := n.cfg.Store.PruneNotifications(ctx, now.Add(-n.cfg.Retention)); err != nil && ctx.Err() == nil {
		n.log.Warn("pruning delivered notifications failed", zap.Error(err))
	}
}

// Subscribed gives a subscription just created its delivery series at 0
// (see maintain), before its first delivery can be attempted.
func (n *Notifier) Subscribed(sub store.Subscription) {
	n.cfg.Metrics.subscriptions([]store.Subscription{sub})
}
