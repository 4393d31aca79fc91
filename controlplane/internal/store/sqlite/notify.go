package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"flotilla.dev/controlplane/internal/store"
)

const subscriptionColumns = `id, name, events, sink_kind, url, secrets, paused, created_at, created_by, updated_at`

// CreateSubscription stores a new subscription (see store.NotificationStore).
func (s *Store) CreateSubscription(ctx context.Context, sub store.Subscription) error {
	events, secrets, err := subscriptionLists(sub)
	if err != nil {
		return err
	}
	_, err = s.write.ExecContext(ctx, `INSERT INTO notification_subscriptions (`+subscriptionColumns+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		sub.ID, sub.Name, events, sub.SinkKind, sub.URL, secrets, sub.Paused, timeArg(sub.CreatedAt), sub.CreatedBy, timeArg(sub.UpdatedAt))
	if isConflict(err) {
		return fmt.Errorf("store: create subscription %q: %w", sub.ID, store.ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("store: create subscription %q: %w", sub.ID, err)
	}
	return nil
}

// subscriptionLists encodes a subscription's event types and secrets.
func subscriptionLists(sub store.Subscription) (events, secrets string, err error) {
	if events, err = store.EncodeStrings(sub.Events); err != nil {
		return "", "", fmt.Errorf("store: subscription %q events: %w", sub.ID, err)
	}
	if secrets, err = store.EncodeStrings(sub.Secrets); err != nil {
		return "", "", fmt.Errorf("store: subscription %q secrets: %w", sub.ID, err)
	}
	return events, secrets, nil
}

func scanSubscription(row rowScanner) (store.Subscription, error) {
	var sub store.Subscription
	var events, secrets []byte
	err := row.Scan(&sub.ID, &sub.Name, &events, &sub.SinkKind, &sub.URL, &secrets, &sub.Paused,
		timeCol{&sub.CreatedAt}, &sub.CreatedBy, timeCol{&sub.UpdatedAt})
	if err != nil {
		return sub, err
	}
	if sub.Events, err = store.DecodeStrings(events); err != nil {
		return sub, fmt.Errorf("subscription %q events: %w", sub.ID, err)
	}
	if sub.Secrets, err = store.DecodeStrings(secrets); err != nil {
		return sub, fmt.Errorf("subscription %q secrets: %w", sub.ID, err)
	}
	return sub, nil
}

// GetSubscription returns a subscription (see store.NotificationStore).
func (s *Store) GetSubscription(ctx context.Context, id string) (store.Subscription, error) {
	sub, err := scanSubscription(s.read.QueryRowContext(ctx, `SELECT `+subscriptionColumns+` FROM notification_subscriptions WHERE id = ?`, id))
	return found(sub, err, "get subscription", id)
}

// ListSubscriptions returns every subscription (see store.NotificationStore).
func (s *Store) ListSubscriptions(ctx context.Context) ([]store.Subscription, error) {
	return queryAll(ctx, s.read, "list subscriptions", scanSubscription,
		`SELECT `+subscriptionColumns+` FROM notification_subscriptions ORDER BY id`)
}

// UpdateSubscription replaces a subscription (see store.NotificationStore).
func (s *Store) UpdateSubscription(ctx context.Context, sub store.Subscription) error {
	events, secrets, err := subscriptionLists(sub)
	if err != nil {
		return err
	}
	res, err := s.write.ExecContext(ctx, `UPDATE notification_subscriptions SET name = ?, events = ?, sink_kind = ?, url = ?,
		secrets = ?, paused = ?, updated_at = ? WHERE id = ?`,
		sub.Name, events, sub.SinkKind, sub.URL, secrets, sub.Paused, timeArg(sub.UpdatedAt), sub.ID)
	return affectedOne(res, err, "update subscription", sub.ID)
}

// affectedOne turns an exec that changed no row into ErrNotFound.
func affectedOne(res sql.Result, err error, op, id string) error {
	if err != nil {
		return fmt.Errorf("store: %s %q: %w", op, id, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("store: %s %q: %w", op, id, err)
	}
	if n == 0 {
		return fmt.Errorf("store: %s %q: %w", op, id, store.ErrNotFound)
	}
	return nil
}

// DeleteSubscription removes a subscription (see store.NotificationStore).
func (s *Store) DeleteSubscription(ctx context.Context, id string) error {
	return s.inWriteTx(ctx, "delete subscription", func(tx *sql.Tx) error {
		for _, q := range []string{`DELETE FROM notification_deliveries WHERE subscription_id = ?`,
			`DELETE FROM notification_attempts WHERE subscription_id = ?`} {
			if _, err := tx.ExecContext(ctx, q, id); err != nil {
				return fmt.Errorf("store: delete subscription %q: %w", id, err)
			}
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM notification_subscriptions WHERE id = ?`, id)
		return affectedOne(res, err, "delete subscription", id)
	})
}

// PublishNotification writes an event and its deliveries (see
// store.NotificationStore).
func (s *Store) PublishNotification(ctx context.Context, ev store.NotificationEvent) (int, error) {
	queued := 0
	err := s.inWriteTx(ctx, "publish notification", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO notification_events (id, type, order_key, occurred_at, body)
			VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`, ev.ID, ev.Type, ev.OrderKey, timeArg(ev.OccurredAt), ev.Body)
		if err != nil {
			return fmt.Errorf("store: publish notification %q: %w", ev.ID, err)
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return err // already published: nothing more to queue
		}
		subs, err := queryRows(ctx, tx, "publish notification", scanSubscription,
			`SELECT `+subscriptionColumns+` FROM notification_subscriptions ORDER BY id`)
		if err != nil {
			return err
		}
		for _, sub := range store.SubscribersOf(subs, ev) {
			if _, err := tx.ExecContext(ctx, `INSERT INTO notification_deliveries (event_id, subscription_id, order_key, state,
				attempts, next_attempt_at, claimed_by, claim_until, created_at, finished_at) VALUES (?, ?, ?, ?, 0, ?, '', 0, ?, 0)`,
				ev.ID, sub.ID, store.DeliveryOrderKey(sub, ev), store.DeliveryPending, timeArg(ev.OccurredAt), timeArg(ev.OccurredAt)); err != nil {
				return fmt.Errorf("store: publish notification %q to %q: %w", ev.ID, sub.ID, err)
			}
			queued++
		}
		return nil
	})
	return queued, err
}

// ClaimDeliveries claims due deliveries (see store.NotificationStore). The
// writer connection serializes claims, so no two claim the same row.
func (s *Store) ClaimDeliveries(ctx context.Context, c store.DeliveryClaim) ([]store.Delivery, error) {
	var out []store.Delivery
	err := s.inWriteTx(ctx, "claim deliveries", func(tx *sql.Tx) error {
		query, args := store.DueDeliveriesQuery(c, "")
		ids, err := queryRows(ctx, tx, "claim deliveries", scanInt64, query, args...)
		if err != nil || len(ids) == 0 {
			return err
		}
		in, inArgs := inList("id", ids, []any{c.Holder, store.Nanos(c.Until)})
		if _, err := tx.ExecContext(ctx, `UPDATE notification_deliveries SET claimed_by = ?, claim_until = ? WHERE `+in, inArgs...); err != nil {
			return fmt.Errorf("store: claim deliveries: %w", err)
		}
		in, inArgs = inList("d.id", ids, nil)
		out, err = queryRows(ctx, tx, "claim deliveries", scanDelivery, store.ClaimedDeliveriesQuery+in+` ORDER BY d.id`, inArgs...)
		return err
	})
	return out, err
}

func scanInt64(row rowScanner) (int64, error) {
	var v int64
	err := row.Scan(&v)
	return v, err
}

func scanDelivery(row rowScanner) (store.Delivery, error) {
	var d store.Delivery
	err := row.Scan(&d.ID, &d.EventID, &d.EventType, &d.OrderKey, timeCol{&d.OccurredAt}, &d.Body, &d.SubscriptionID,
		&d.Attempts, timeCol{&d.CreatedAt})
	return d, err
}

// FinishDelivery records an attempt (see store.NotificationStore).
func (s *Store) FinishDelivery(ctx context.Context, r store.DeliveryResult) error {
	return s.inWriteTx(ctx, "finish delivery", func(tx *sql.Tx) error {
		finished := time.Time{}
		if r.State != store.DeliveryPending {
			finished = r.Attempt.At
		}
		res, err := tx.ExecContext(ctx, `UPDATE notification_deliveries SET state = ?, attempts = attempts + 1, next_attempt_at = ?,
			claimed_by = '', claim_until = 0, finished_at = ? WHERE id = ? AND claimed_by = ? AND state = ?`,
			r.State, store.Nanos(r.NextAttemptAt), store.Nanos(finished), r.ID, r.Holder, store.DeliveryPending)
		if err := affectedOne(res, err, "finish delivery", fmt.Sprint(r.ID)); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return fmt.Errorf("store: finish delivery %d: claim of %q lost: %w", r.ID, r.Holder, store.ErrFenced)
			}
			return err
		}
		a := r.Attempt
		if _, err := tx.ExecContext(ctx, `INSERT INTO notification_attempts (delivery_id, subscription_id, event_id, event_type,
			attempt, at, outcome, http_status, error, duration_ns) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			r.ID, a.SubscriptionID, a.EventID, a.EventType, a.Attempt, timeArg(a.At), a.Outcome, a.HTTPStatus, a.Error, int64(a.Duration)); err != nil {
			return fmt.Errorf("store: finish delivery %d: log attempt: %w", r.ID, err)
		}
		if _, err := tx.ExecContext(ctx, store.PruneAttemptsQuery, a.SubscriptionID, a.SubscriptionID, store.MaxAttemptsKept); err != nil {
			return fmt.Errorf("store: finish delivery %d: prune log: %w", r.ID, err)
		}
		return nil
	})
}

// ReleaseDeliveries gives back claims (see store.NotificationStore).
func (s *Store) ReleaseDeliveries(ctx context.Context, holder string, ids []int64) error {
	if len(ids) == 0 {
		return nil
	}
	in, args := inList("id", ids, []any{holder, store.DeliveryPending})
	if _, err := s.write.ExecContext(ctx, store.ReleaseQuery+in, args...); err != nil {
		return fmt.Errorf("store: release %d deliveries: %w", len(ids), err)
	}
	return nil
}

// ListDeliveryAttempts returns a subscription's delivery log (see
// store.NotificationStore).
func (s *Store) ListDeliveryAttempts(ctx context.Context, subscriptionID string, limit int) ([]store.DeliveryAttempt, error) {
	return queryAll(ctx, s.read, "list delivery attempts", scanAttempt, store.ListAttemptsQuery, subscriptionID, limit)
}

func scanAttempt(row rowScanner) (store.DeliveryAttempt, error) {
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
	var oldest sql.NullInt64
	if err := s.read.QueryRowContext(ctx, query, args...).Scan(&q.Pending, &oldest); err != nil {
		return q, fmt.Errorf("store: pending deliveries: %w", err)
	}
	if oldest.Valid {
		q.Oldest = time.Unix(0, oldest.Int64).UTC()
	}
	return q, nil
}

// PruneNotifications deletes finished deliveries and old events (see
// store.NotificationStore).
func (s *Store) PruneNotifications(ctx context.Context, before time.Time) (int, error) {
	var n int64
	err := s.inWriteTx(ctx, "prune notifications", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, store.PruneDeliveriesQuery, store.DeliveryPending, timeArg(before))
		if err != nil {
			return fmt.Errorf("store: prune notifications: %w", err)
		}
		if n, err = res.RowsAffected(); err != nil {
			return fmt.Errorf("store: prune notifications: %w", err)
		}
		if _, err := tx.ExecContext(ctx, store.PruneEventsQuery, timeArg(before)); err != nil {
			return fmt.Errorf("store: prune notifications: %w", err)
		}
		return nil
	})
	return int(n), err
}

// rowsQuerier is what *sql.DB and *sql.Tx share for multi-row queries.
type rowsQuerier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// queryRows is queryAll on a transaction or a pool.
func queryRows[T any](ctx context.Context, q rowsQuerier, op string, scan func(rowScanner) (T, error), query string, args ...any) ([]T, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("store: %s: %w", op, err)
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, fmt.Errorf("store: %s: %w", op, err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: %s: %w", op, err)
	}
	return out, nil
}
