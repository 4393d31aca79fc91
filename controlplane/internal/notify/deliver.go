package notify

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"go.uber.org/zap"

	"flotilla.dev/controlplane/internal/store"
)

// Dispatch claims the due deliveries this process has room for and starts
// their attempts; it returns how many it claimed. It claims in rounds of
// at most PerSink, looking at the lanes again between rounds, so that a
// slow sink's lane never holds more than about twice PerSink deliveries
// and cannot take the room other sinks need. The delivery loop calls it;
// tests call it to step the notifier with a fake clock, then Wait.
func (n *Notifier) Dispatch(ctx context.Context) (int, error) {
	total := 0
	defer n.startAll()
	for {
		claimed, more, err := n.claimRound(ctx)
		total += claimed
		if err != nil || !more {
			return total, err
		}
	}
}

// startAll starts what every lane has room for. A Slack lane starts once
// all rounds are claimed, so that a burst goes out as one message.
func (n *Notifier) startAll() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, l := range n.lanes {
		n.start(l)
	}
}

// claimRound claims one round and starts its attempts; more reports that
// the round was full, so another may find more.
func (n *Notifier) claimRound(ctx context.Context) (claimed int, more bool, err error) {
	now := n.cfg.Now()
	n.mu.Lock()
	exclude, free := n.claimable(now)
	n.mu.Unlock()
	limit := min(free, n.cfg.PerSink)
	if limit <= 0 {
		return 0, false, nil
	}
	ds, err := n.cfg.Store.ClaimDeliveries(ctx, store.DeliveryClaim{
		Holder: n.cfg.Holder, Now: now, Until: now.Add(n.cfg.ClaimTTL), Limit: limit, Exclude: exclude,
	})
	if err != nil || len(ds) == 0 {
		return 0, false, err
	}
	subs, err := n.subscriptionsOf(ctx, ds)
	if err != nil {
		n.release(ds)
		return 0, false, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, d := range ds {
		if sub := subs[d.SubscriptionID]; sub != nil {
			l := n.lane(*sub)
			l.queue = append(l.queue, d)
			n.inflight++
		}
	}
	return len(ds), len(ds) == limit, nil
}

// release gives back claims this process will not attempt (a failed read,
// or a stop in the middle of a claim); should that fail too, they lapse
// after ClaimTTL.
func (n *Notifier) release(ds []store.Delivery) {
	ids := make([]int64, len(ds))
	for i, d := range ds {
		ids[i] = d.ID
	}
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.PublishTimeout)
	defer cancel()
	if err := n.cfg.Store.ReleaseDeliveries(ctx, n.cfg.Holder, ids); err != nil {
		n.log.Warn("giving back claimed notification deliveries failed; they are retried once their claim lapses",
			zap.Int("deliveries", len(ids)), zap.Error(err))
	}
}

// subscriptionsOf reads the subscriptions of claimed deliveries now, so
// that a rotated secret or a moved URL applies to the next attempt; a
// deleted one maps to nil (its deliveries went with it).
func (n *Notifier) subscriptionsOf(ctx context.Context, ds []store.Delivery) (map[string]*store.Subscription, error) {
	subs := make(map[string]*store.Subscription)
	for _, d := range ds {
		if _, ok := subs[d.SubscriptionID]; ok {
			continue
		}
		sub, err := n.cfg.Store.GetSubscription(ctx, d.SubscriptionID)
		switch {
		case errors.Is(err, store.ErrNotFound):
			subs[d.SubscriptionID] = nil
		case err != nil:
			return nil, err
		default:
			subs[d.SubscriptionID] = &sub
		}
	}
	return subs, nil
}

// maxSlackBatch bounds the deliveries one Slack message coalesces.
const maxSlackBatch = 100

// claimable lists the subscriptions not to claim for now (a webhook
// lane full, a Slack lane busy or inside its interval) and how many
// deliveries may be claimed. Called with n.mu held.
func (n *Notifier) claimable(now time.Time) ([]string, int) {
	var exclude []string
	for id, l := range n.lanes {
		busy := len(l.queue)+l.running >= 2*n.cfg.PerSink
		if l.sub.SinkKind == store.SinkSlack {
			busy = l.running > 0 || len(l.queue) >= maxSlackBatch || now.Before(l.slackNext)
		}
		if busy {
			exclude = append(exclude, id)
		}
	}
	return exclude, n.cfg.MaxInFlight - n.inflight
}

// lane returns sub's lane, made on first use, with sub as last read.
// Called with n.mu held.
func (n *Notifier) lane(sub store.Subscription) *lane {
	l := n.lanes[sub.ID]
	if l == nil {
		l = &lane{}
		n.lanes[sub.ID] = l
	}
	l.sub = sub
	return l
}

// start begins the attempts a lane has room for: up to PerSink for a
// webhook, one coalesced message of everything queued for Slack. Called
// with n.mu held.
func (n *Notifier) start(l *lane) {
	if n.base.Err() != nil {
		return // stopping: Run gives the queued claims back
	}
	sub := l.sub
	if sub.SinkKind == store.SinkSlack {
		if l.running == 0 && len(l.queue) > 0 {
			batch := l.queue
			l.queue, l.running = nil, 1
			n.wg.Add(1)
			go n.attemptSlack(n.base, sub, batch)
		}
		return
	}
	for l.running < n.cfg.PerSink && len(l.queue) > 0 {
		d := l.queue[0]
		l.queue = l.queue[1:]
		l.running++
		n.wg.Add(1)
		go n.attemptWebhook(n.base, sub, d)
	}
}

// Wait waits for the attempts in flight (tests step the notifier with
// Dispatch, then Wait).
func (n *Notifier) Wait() { n.wg.Wait() }

// attemptWebhook sends one delivery, signed with every secret.
func (n *Notifier) attemptWebhook(base context.Context, sub store.Subscription, d store.Delivery) {
	defer n.wg.Done()
	ctx, cancel := context.WithTimeout(base, n.cfg.AttemptTimeout)
	defer cancel()
	started := n.cfg.Now()
	ts := started.Unix()
	var res result
	sig, err := SignatureHeader(sub.Secrets, d.EventID, ts, d.Body)
	if err != nil {
		res = result{err: err}
	} else {
		h := http.Header{}
		h.Set(HeaderID, d.EventID)
		h.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
		h.Set(HeaderSignature, sig)
		res = post(ctx, n.cfg.Client, sub.URL, h, d.Body, started)
	}
	n.finish(sub, []store.Delivery{d}, res, started)
}

// attemptSlack sends a lane's queued deliveries as one message.
func (n *Notifier) attemptSlack(base context.Context, sub store.Subscription, ds []store.Delivery) {
	defer n.wg.Done()
	ctx, cancel := context.WithTimeout(base, n.cfg.AttemptTimeout)
	defer cancel()
	started := n.cfg.Now()
	var res result
	if body, err := renderSlack(ds); err != nil {
		res = result{err: err}
	} else {
		res = post(ctx, n.cfg.Client, sub.URL, http.Header{}, body, started)
	}
	n.finish(sub, ds, res, started)
}

// finish records the attempt's outcome for each delivery it carried and
// frees the lane.
func (n *Notifier) finish(sub store.Subscription, ds []store.Delivery, res result, started time.Time) {
	now := n.cfg.Now()
	took := now.Sub(started)
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.PublishTimeout)
	defer cancel()
	first := ""
	for _, d := range ds {
		state, next, outcome := n.decide(d, res, now)
		if first == "" {
			first = outcome // a Slack message's deliveries share one answer
		}
		a := store.DeliveryAttempt{
			DeliveryID: d.ID, SubscriptionID: sub.ID, EventID: d.EventID, EventType: d.EventType, Attempt: d.Attempts + 1,
			At: started, Outcome: outcome, HTTPStatus: res.status, Duration: took,
		}
		if res.err != nil {
			a.Error = truncate(res.err.Error(), 1024)
		}
		err := n.cfg.Store.FinishDelivery(ctx, store.DeliveryResult{ID: d.ID, Holder: n.cfg.Holder, State: state, NextAttemptAt: next, Attempt: a})
		if err != nil {
			// The claim lapses and another attempt follows: at least once.
			n.log.Warn("recording a delivery attempt failed; it will be attempted again", zap.String("subscription_id", sub.ID),
				zap.String("event_id", d.EventID), zap.Error(err))
		}
		n.logAttempt(sub, a, next)
	}
	n.cfg.Metrics.delivered(sub.ID, sub.SinkKind, first, len(ds), took)
	n.mu.Lock()
	if l := n.lanes[sub.ID]; l != nil {
		l.running--
		if sub.SinkKind == store.SinkSlack {
			l.slackNext = now.Add(n.cfg.SlackInterval)
		}
		if l.running == 0 && len(l.queue) == 0 && sub.SinkKind != store.SinkSlack {
			delete(n.lanes, sub.ID)
		}
		n.start(l)
	}
	n.inflight -= len(ds)
	n.mu.Unlock()
	n.Wake()
}

// decide is a delivery's next state after an attempt: delivered on a 2xx;
// dead after MaxAttempts or MaxAge; else pending, due again after the
// sink's Retry-After or the backoff.
func (n *Notifier) decide(d store.Delivery, res result, now time.Time) (state string, next time.Time, outcome string) {
	if res.ok() {
		return store.DeliveryDelivered, time.Time{}, store.AttemptDelivered
	}
	attempt := d.Attempts + 1
	if attempt >= n.cfg.MaxAttempts || now.Sub(d.CreatedAt) >= n.cfg.MaxAge {
		return store.DeliveryDead, time.Time{}, store.AttemptDead
	}
	delay := res.retryAfter
	if delay <= 0 {
		delay = n.cfg.Jitter(n.backoff(attempt))
	}
	return store.DeliveryPending, now.Add(delay), store.AttemptRetry
}

// backoff is MinBackoff doubled per attempt after the first, capped at
// MaxBackoff.
func (n *Notifier) backoff(attempt int) time.Duration {
	d := n.cfg.MinBackoff
	for i := 1; i < attempt && d < n.cfg.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, n.cfg.MaxBackoff)
}

// logAttempt logs an attempt without the sink's URL or secrets.
func (n *Notifier) logAttempt(sub store.Subscription, a store.DeliveryAttempt, next time.Time) {
	fields := []zap.Field{zap.String("subscription_id", sub.ID), zap.String("sink", sub.SinkKind), zap.String("event_id", a.EventID),
		zap.String("event_type", a.EventType), zap.Int("attempt", a.Attempt), zap.Int("http_status", a.HTTPStatus),
		zap.Duration("duration", a.Duration)}
	switch a.Outcome {
	case store.AttemptDelivered:
		n.log.Debug("notification delivered", fields...)
	case store.AttemptRetry:
		n.log.Warn("notification delivery failed; retrying", append(fields, zap.Time("next_attempt_at", next), zap.String("error", a.Error))...)
	default:
		n.log.Error("notification delivery given up", append(fields, zap.String("error", a.Error))...)
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
