-- 0012: notifications. Subscriptions send event types to a sink (a
-- Standard Webhooks endpoint or a Slack incoming webhook); the outbox holds
-- each event once and one delivery per subscription that wants it, written
-- in one transaction, so nothing queued is lost across a restart. A
-- delivery is claimed by one process at a time (claimed_by until
-- claim_until) and retried until delivered or given up (state dead).
-- Times are INTEGER Unix nanoseconds in UTC; 0 is "never".

CREATE TABLE notification_subscriptions (
    id         TEXT    NOT NULL PRIMARY KEY,
    name       TEXT    NOT NULL,
    events     TEXT    NOT NULL, -- JSON list of event types
    sink_kind  TEXT    NOT NULL,
    url        TEXT    NOT NULL, -- a secret for Slack; never returned
    secrets    TEXT    NOT NULL, -- JSON list of "whsec_" secrets
    paused     INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    created_by TEXT    NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE notification_events (
    id          TEXT    NOT NULL PRIMARY KEY, -- the idempotency key
    type        TEXT    NOT NULL,
    order_key   TEXT    NOT NULL,
    occurred_at INTEGER NOT NULL,
    body        BLOB    NOT NULL
);

CREATE INDEX notification_events_occurred ON notification_events (occurred_at);

CREATE TABLE notification_deliveries (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id        TEXT    NOT NULL REFERENCES notification_events (id),
    subscription_id TEXT    NOT NULL,
    order_key       TEXT    NOT NULL,
    state           TEXT    NOT NULL,
    attempts        INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    claimed_by      TEXT    NOT NULL,
    claim_until     INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    finished_at     INTEGER NOT NULL,
    UNIQUE (event_id, subscription_id)
);

CREATE INDEX notification_deliveries_due ON notification_deliveries (state, next_attempt_at);
CREATE INDEX notification_deliveries_order ON notification_deliveries (subscription_id, order_key, state, id);

CREATE TABLE notification_attempts (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id     INTEGER NOT NULL,
    subscription_id TEXT    NOT NULL,
    event_id        TEXT    NOT NULL,
    event_type      TEXT    NOT NULL,
    attempt         INTEGER NOT NULL,
    at              INTEGER NOT NULL,
    outcome         TEXT    NOT NULL,
    http_status     INTEGER NOT NULL,
    error           TEXT    NOT NULL,
    duration_ns     INTEGER NOT NULL
);

CREATE INDEX notification_attempts_subscription ON notification_attempts (subscription_id, id);
