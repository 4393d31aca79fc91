-- 0012: notifications (SQLite's 0012). Subscriptions send event types to a
-- sink (a Standard Webhooks endpoint or a Slack incoming webhook); the
-- outbox holds each event once and one delivery per subscription that
-- wants it, written in one transaction, so nothing queued is lost across a
-- restart. A delivery is claimed by one replica at a time (claimed_by until
-- claim_until, rows picked with FOR UPDATE SKIP LOCKED) and retried until
-- delivered or given up (state dead). Times are BIGINT Unix nanoseconds in
-- UTC; 0 is "never".

CREATE TABLE notification_subscriptions (
    id         TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    name       TEXT    NOT NULL,
    events     TEXT    NOT NULL,
    sink_kind  TEXT    NOT NULL,
    url        TEXT    NOT NULL,
    secrets    TEXT    NOT NULL,
    paused     BOOLEAN NOT NULL,
    created_at BIGINT  NOT NULL,
    created_by TEXT    NOT NULL,
    updated_at BIGINT  NOT NULL
);

CREATE TABLE notification_events (
    id          TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    type        TEXT   NOT NULL,
    order_key   TEXT   NOT NULL,
    occurred_at BIGINT NOT NULL,
    body        BYTEA  NOT NULL
);

CREATE INDEX notification_events_occurred ON notification_events (occurred_at);

CREATE TABLE notification_deliveries (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id        TEXT COLLATE "C" NOT NULL REFERENCES notification_events (id),
    subscription_id TEXT COLLATE "C" NOT NULL,
    order_key       TEXT    NOT NULL,
    state           TEXT    NOT NULL,
    attempts        INTEGER NOT NULL,
    next_attempt_at BIGINT  NOT NULL,
    claimed_by      TEXT    NOT NULL,
    claim_until     BIGINT  NOT NULL,
    created_at      BIGINT  NOT NULL,
    finished_at     BIGINT  NOT NULL,
    UNIQUE (event_id, subscription_id)
);

CREATE INDEX notification_deliveries_due ON notification_deliveries (state, next_attempt_at);
CREATE INDEX notification_deliveries_order ON notification_deliveries (subscription_id, order_key, state, id);

CREATE TABLE notification_attempts (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id     BIGINT  NOT NULL,
    subscription_id TEXT COLLATE "C" NOT NULL,
    event_id        TEXT    NOT NULL,
    event_type      TEXT    NOT NULL,
    attempt         INTEGER NOT NULL,
    at              BIGINT  NOT NULL,
    outcome         TEXT    NOT NULL,
    http_status     INTEGER NOT NULL,
    error           TEXT    NOT NULL,
    duration_ns     BIGINT  NOT NULL
);

CREATE INDEX notification_attempts_subscription ON notification_attempts (subscription_id, id);
