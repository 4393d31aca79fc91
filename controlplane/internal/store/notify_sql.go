package store

import (
	"slices"
	"strings"
	"time"
)

// The outbox's queries are the same in both drivers; they are written with
// "?" placeholders (PostgreSQL's driver numbers them) and times as Unix
// nanoseconds (see the schema).

// SubscribersOf returns the subscriptions in subs that get a delivery of
// ev: the one ev.Only names, or every one that wants its type.
func SubscribersOf(subs []Subscription, ev NotificationEvent) []Subscription {
	var out []Subscription
	for _, s := range subs {
		if (ev.Only != "" && s.ID == ev.Only) || (ev.Only == "" && s.Wants(ev.Type)) {
			out = append(out, s)
		}
	}
	return out
}

// DeliveryOrderKey is the order key of ev's delivery to sub: a Slack
// sink's deliveries keep none, because the events a message coalesces are
// shown in the order they occurred anyway, and holding a burst's later
// events back would split it into one message each.
func DeliveryOrderKey(sub Subscription, ev NotificationEvent) string {
	if sub.SinkKind == SinkSlack {
		return ""
	}
	return ev.OrderKey
}

// DueDeliveriesQuery selects the IDs of the deliveries c claims (see
// DeliveryClaim), oldest first; lock is appended to the query (PostgreSQL:
// "FOR UPDATE OF d SKIP LOCKED", so that replicas claiming at once pick
// different rows). Its arguments: pending, now (twice), the exclusions, the
// limit.
func DueDeliveriesQuery(c DeliveryClaim, lock string) (string, []any) {
	now := Nanos(c.Now)
	args := []any{DeliveryPending, now, now}
	exclude := ""
	if len(c.Exclude) > 0 {
		ex := slices.Clone(c.Exclude)
		exclude = " AND d.subscription_id NOT IN (?" + strings.Repeat(", ?", len(ex)-1) + ")"
		for _, id := range ex {
			args = append(args, id)
		}
	}
	args = append(args, DeliveryPending, max(c.Limit, 1))
	// An earlier pending delivery of the same subscription and order
	// key, claimed or not, holds a later one back: order per key is kept.
	return `SELECT d.id FROM notification_deliveries d
		WHERE d.state = ? AND d.next_attempt_at <= ? AND d.claim_until <= ?` + exclude + `
		AND (d.order_key = '' OR NOT EXISTS (SELECT 1 FROM notification_deliveries e
			WHERE e.subscription_id = d.subscription_id AND e.order_key = d.order_key AND e.state = ? AND e.id < d.id))
		ORDER BY d.id LIMIT ? ` + lock, args
}

// ClaimedDeliveriesQuery reads claimed deliveries with their events; the
// caller appends "d.id IN (…)".
const ClaimedDeliveriesQuery = `SELECT d.id, d.event_id, ev.type, d.order_key, ev.occurred_at, ev.body, d.subscription_id,
	d.attempts, d.created_at FROM notification_deliveries d JOIN notification_events ev ON ev.id = d.event_id WHERE `

// PruneAttemptsQuery keeps a subscription's MaxAttemptsKept newest log
// entries. Arguments: the subscription (twice), the number kept.
const PruneAttemptsQuery = `DELETE FROM notification_attempts WHERE subscription_id = ? AND id <= (
	SELECT id FROM notification_attempts WHERE subscription_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?)`

// ListAttemptsQuery reads a subscription's newest log entries. Arguments:
// the subscription, the limit.
const ListAttemptsQuery = `SELECT delivery_id, subscription_id, event_id, event_type, attempt, at, outcome, http_status, error,
	duration_ns FROM notification_attempts WHERE subscription_id = ? ORDER BY id DESC LIMIT ?`

// PendingQuery counts the pending deliveries of a subscription (all when
// subscriptionID is "") and finds the oldest one's creation.
func PendingQuery(subscriptionID string) (string, []any) {
	q := `SELECT COUNT(*), MIN(created_at) FROM notification_deliveries WHERE state = ?`
	args := []any{DeliveryPending}
	if subscriptionID != "" {
		q += ` AND subscription_id = ?`
		args = append(args, subscriptionID)
	}
	return q, args
}

// PruneDeliveriesQuery deletes finished deliveries created before a time.
// Arguments: pending, the time.
const PruneDeliveriesQuery = `DELETE FROM notification_deliveries WHERE state <> ? AND created_at < ?`

// PruneEventsQuery deletes events without a delivery that occurred before a
// time. Argument: the time.
const PruneEventsQuery = `DELETE FROM notification_events WHERE occurred_at < ? AND NOT EXISTS (
	SELECT 1 FROM notification_deliveries d WHERE d.event_id = notification_events.id)`

// Nanos encodes a time of the outbox's tables: Unix nanoseconds, 0 for the
// zero time ("never").
func Nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// ReleaseQuery gives back a holder's claims; the caller appends
// "id IN (…)". Arguments: the holder, pending.
const ReleaseQuery = `UPDATE notification_deliveries SET claimed_by = '', claim_until = 0
	WHERE claimed_by = ? AND state = ? AND `
