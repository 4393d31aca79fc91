package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"flotilla.dev/controlplane/internal/store"
)

const subscriptionColumns = `id, name, events, sink_kind, url, secrets, paused, created_at, created_by, updated_at`

// numbered rewrites the "?" placeholders of the drivers' shared queries as
// $1, $2… (none of those queries has a "?" in a literal).
func numbered(q string) string {
	var b strings.Builder
	n := 0
	for _, r := range q {
		if r == '?' {
			n++
			fmt.Fprintf(&b, "$%d", n)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// CreateSubscription stores a new subscription (see store.NotificationStore).
func (s *Store) CreateSubscription(ctx context.Context, sub store.Subscription) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO notification_subscriptions (`+subscriptionColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
		sub.ID, sub.Name, stringsArg(sub.Events), sub.SinkKind, sub.URL, stringsArg(sub.Secrets), sub.Paused,
		timeArg(sub.CreatedAt), sub.CreatedBy, timeArg(sub.UpdatedAt))
	if isConflict(err) {
		return fmt.Errorf("store: create subscription %q: %w", sub.ID, store.ErrConflict)
	}
	if err != nil {
		return wrap(err, "create subscription %q", sub.ID)
	}
	return nil
}

func scanSubscription(row pgx.Row) (store.Subscription, error) {
	var sub store.Subscription
	err := row.Scan(&sub.ID, &sub.Name, stringsCol{&sub.Events}, &sub.SinkKind, &sub.URL, stringsCol{&sub.Secrets}, &sub.Paused,
		timeCol{&sub.CreatedAt}, &sub.CreatedBy, timeCol{&sub.UpdatedAt})
	return sub, err
}

// GetSubscription returns a subscription (see store.NotificationStore).
func (s *Store) GetSubscription(ctx context.Context, id string) (store.Subscription, error) {
	sub, err := scanSubscription(s.pool.QueryRow(ctx, `SELECT `+subscriptionColumns+` FROM notification_subscriptions WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return sub, fmt.Errorf("store: get subscription %q: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return sub, wrap(err, "get subscription %q", id)
	}
	return sub, nil
}

// ListSubscriptions returns every subscription (see store.NotificationStore).
func (s *Store) ListSubscriptions(ctx context.Context) ([]store.Subscription, error) {
	return queryAll(ctx, s.pool, "list subscriptions", scanSubscription,
		`SELECT `+subscriptionColumns+` FROM notification_subscriptions ORDER BY id`)
}

// UpdateSubscription replaces a subscription (see store.NotificationStore).
func (s *Store) UpdateSubscription(ctx context.Context, sub store.Subscription) error {
	tag, err := s.pool.Exec(ctx, `UPDATE notification_subscriptions SET name = $1, events = $2, sink_kind = $3, url = $4,
		secrets = $5, paused = $6, updated_at = $7 WHERE id = $8`,
		sub.Name, stringsArg(sub.Events), sub.SinkKind, sub.URL, stringsArg(sub.Secrets), sub.Paused, timeArg(sub.UpdatedAt), sub.ID)
	if err != nil {
		return wrap(err, "update subscription %q", sub.ID)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("store: update subscription %q: %w", sub.ID, store.ErrNotFound)
	}
	return nil
}

// DeleteSubscription removes a subscription (see store.NotificationStore).
func (s *Store) DeleteSubscription(ctx context.Context, id string) error {
	return s.inTx(ctx, "delete subscription", func(tx pgx.Tx) error {
		for _, q := range []string{`DELETE FROM notification_deliveries WHERE subscription_id = $1`,
			`DELETE FROM notification_attempts WHERE subscription_id = $1`} {
			if _, err := tx.Exec(ctx, q, id); err != nil {
				return wrap(err, "delete subscription %q", id)
			}
		}
		tag, err := tx.Exec(ctx, `DELETE FROM notification_subscriptions WHERE id = $1`, id)
		if err != nil {
			return wrap(err, "delete subscription %q", id)
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("store: delete subscription %q: %w", id, store.ErrNotFound)
		}
		return nil
	})
}

// PublishNotification writes an event and its deliveries (see
// store.NotificationStore). The subscriptions are read in the same
// transaction, so a subscription deleted meanwhile gets nothing.
func (s *Store) PublishNotification(ctx context.Context, ev store.NotificationEvent) (int, error) {
	queued := 0
	err := s.inTx(ctx, "publish notification", func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `INSERT INTO notification_events (id, type, order_key, occurred_at, body)
			VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING`, ev.ID, ev.Type, ev.OrderKey, timeArg(ev.OccurredAt), ev.Body)
		if err != nil {
			return wrap(err, "publish notification %q", ev.ID)
		}
		if tag.RowsAffected() == 0 {
			return nil // already published: nothing more to queue
		}
		subs, err := queryAll(ctx, tx, "publish notification", scanSubscription,
			`SELECT `+subscriptionColumns+` FROM notification_subscriptions ORDER BY id FOR SHARE`)
		if err != nil {
			return err
		}
		for _, sub := range store.SubscribersOf(subs, ev) {
			if _, err := tx.Exec(ctx, `INSERT INTO notification_deliveries (event_id, subscription_id, order_key, state,
				attempts, next_attempt_at, claimed_by, claim_until, created_at, finished_at) VALUES ($1, $2, $3, $4, 0, $5, '', 0, $5, 0)`,
				ev.ID, sub.ID, store.DeliveryOrderKey(sub, ev), store.DeliveryPending, timeArg(ev.OccurredAt)); err != nil {
				return wrap(err, "publish notification %q to %q", ev.ID, sub.ID)
			}
			queued++
		}
		return nil
	})
	return queued, err
}

// ClaimDeliveries claims due deliveries (see store.NotificationStore):
// the rows are locked with SKIP LOCKED, so that replicas claiming at once
// take different ones, and each is claimed for one holder until c.Until.
func (s *Store) ClaimDeliveries(ctx context.Context, c store.DeliveryClaim) ([]store.Delivery, error) {
	var out []store.Delivery
	err := s.inTx(ctx, "claim deliveries", func(tx pgx.Tx) error {
		query, args := store.DueDeliveriesQuery(c, "FOR UPDATE OF d SKIP LOCKED")
		ids, err := queryAll(ctx, tx, "claim deliveries", scanInt64, numbered(query), args...)
		if err != nil || len(ids) == 0 {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE notification_deliveries SET claimed_by = $1, claim_until = $2 WHERE id = ANY($3)`,
			c.Holder, store.Nanos(c.Until), ids); err != nil {
			return wrap(err, "claim deliveries")
		}
		out, err = queryAll(ctx, tx, "claim deliveries", scanDelivery, store.ClaimedDeliveriesQuery+`d.id = ANY($1) ORDER BY d.id`, ids)
		return err
	})
	return out, err
}

func scanInt64(row pgx.Row) (int64, error) {
	var v int64
	err := row.Scan(&v)
	return v, err
}

func scanDelivery(row pgx.Row) (store.Delivery, error) {
	var d store.Delivery
	err := row.Scan(&d.ID, &d.EventID, &d.EventType, &d.OrderKey, timeCol{&d.OccurredAt}, &d.Body, &d.SubscriptionID,
		&d.Attempts, timeCol{&d.CreatedAt})
	return d, err
}

// FinishDelivery records an attempt (see store.NotificationStore).
func (s *Store) FinishDelivery(ctx context.Context, r store.DeliveryResult) error {
	return s.inTx(ctx, "finish delivery", func(tx pgx.Tx) error {
		finished := time.Time{}
		if r.State != store.DeliveryPending {
			finished = r.Attempt.At
		}
		tag, err := tx.Exec(ctx, `UPDATE notification_deliveries SET state = $1, attempts = attempts + 1, next_attempt_at = $2,
			claimed_by = '', claim_until = 0, finished_at = $3 WHERE id = $4 AND claimed_by = $5 AND state = $6`,
			r.State, store.Nanos(r.NextAttemptAt), store.Nanos(finished), r.ID, r.Holder, store.DeliveryPending)
		if err != nil {
			return wrap(err, "finish delivery %d", r.ID)
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("store: finish delivery %d: claim of %q lost: %w", r.ID, r.Holder, store.ErrFenced)
		}
		a := r.Attempt
		if _, err := tx.Exec(ctx, `INSERT INTO notification_attempts (delivery_id, subscription_id, event_id, event_type,
			attempt, at, outcome, http_status, error, duration_ns) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
			r.ID, a.SubscriptionID, a.EventID, a.EventType, a.Attempt, timeArg(a.At), a.Outcome, a.HTTPStatus, a.Error, int64(a.Duration)); err != nil {
			return wrap(err, "finish delivery %d: log attempt", r.ID)
		}
		if _, err := tx.Exec(ctx, numbered(store.PruneAttemptsQuery), a.SubscriptionID, a.SubscriptionID, store.MaxAttemptsKept); err != nil {
			return wrap(err, "finish delivery %d: prune log", r.ID)
		}
		return nil
	})
}

// ReleaseDeliveries gives back claims (see store.NotificationStore).
func (s *Store) ReleaseDeliveries(ctx context.Context, holder string, ids []int64) error {
	if len(ids) == 0 {
		return nil
	}
	if _, err := s.pool.Exec(ctx, numbered(store.ReleaseQuery)+`id = ANY($3)`, holder, store.DeliveryPending, ids); err != nil {
		return wrap(err, "release %d deliveries", len(ids))
	}
	return nil
}

// ListDeliveryAttempts returns a subscription's delivery log (see
// store.NotificationStore).
func (s *Store) ListDeliveryAttempts(ctx context.Context, subscriptionID string, limit int) ([]store.DeliveryAttempt, error) {
	return queryAll(ctx, s.pool, "list delivery attempts", scanAttempt, numbered(store.ListAttemptsQuery), subscriptionID, limit)
}

func scanAttempt(row pgx.Row) (store.DeliveryAttempt, error) {
	var a store.DeliveryAttempt
	var d int64
	err := row.Scan(&a.DeliveryID, &a.SubscriptionID, &a.EventID, &a.EventType, &a.Attempt, timeCol{&a.At}, &a.Outcome,
		&a.HTTPStatus, &a.Error, &d)
	a.Duration = time.Duration(d)
	return a, err
}

// PendingDeliveries counts pending deliveries (see store.NotificationStore).
func (s *Store) PendingDeliveries(ctx context.Context, subscriptionID string) (store.NotificationQueue, error) {
	query, args := store.PendingQuery(subscriptionID)
	var q store.NotificationQueue
	var oldest *int64
	if err := s.pool.QueryRow(ctx, numbered(query), args...).Scan(&q.Pending, &oldest); err != nil {
		return q, wrap(err, "pending deliveries")
	}
	if oldest != nil {
		q.Oldest = time.Unix(0, *oldest).UTC()
	}
	return q, nil
}

// PruneNotifications deletes finished deliveries and old events (see
// store.NotificationStore).
func (s *Store) PruneNotifications(ctx context.Context, before time.Time) (int, error) {
	var n int64
	err := s.inTx(ctx, "prune notifications", func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, numbered(store.PruneDeliveriesQuery), store.DeliveryPending, timeArg(before))
		if err != nil {
			return wrap(err, "prune notifications")
		}
		n = tag.RowsAffected()
		if _, err := tx.Exec(ctx, numbered(store.PruneEventsQuery), timeArg(before)); err != nil {
			return wrap(err, "prune notifications")
		}
		return nil
	})
	return int(n), err
}
