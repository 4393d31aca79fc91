-- 0003: services and rollouts. Definitions (a service, a rollout's plan)
-- are serialized protobuf in BLOBs; the progress the engine moves and the
-- host steps are plain columns. Events are numbered per rollout and written
-- in the same transaction as the change they describe.

CREATE TABLE services (
    name       TEXT    NOT NULL PRIMARY KEY,
    spec       BLOB    NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE rollouts (
    id                TEXT    NOT NULL PRIMARY KEY,
    service           TEXT    NOT NULL REFERENCES services (name),
    image             TEXT    NOT NULL,
    rollback_of       TEXT    NOT NULL,
    created_by        TEXT    NOT NULL,
    definition        BLOB    NOT NULL,
    service_spec      BLOB    NOT NULL,
    load_balancers    TEXT    NOT NULL,
    state             INTEGER NOT NULL,
    message           TEXT    NOT NULL,
    current_batch     INTEGER NOT NULL,
    prepared          INTEGER NOT NULL,
    batch_started_at  INTEGER,
    batch_finished_at INTEGER,
    stop              TEXT    NOT NULL,
    stop_rollback     INTEGER NOT NULL,
    stop_state        INTEGER NOT NULL,
    created_at        INTEGER NOT NULL,
    finished_at       INTEGER
);

-- One active (unfinished) rollout per service, whatever the engine checks.
CREATE UNIQUE INDEX rollouts_one_active ON rollouts (service) WHERE finished_at IS NULL;
CREATE INDEX rollouts_service_created ON rollouts (service, created_at, id);
CREATE INDEX rollouts_created ON rollouts (created_at, id);

CREATE TABLE rollout_hosts (
    rollout_id      TEXT    NOT NULL REFERENCES rollouts (id),
    agent_id        TEXT    NOT NULL,
    batch           INTEGER NOT NULL,
    step            INTEGER NOT NULL,
    rolling_back    INTEGER NOT NULL,
    previous_image  TEXT    NOT NULL,
    message         TEXT    NOT NULL,
    started_at      INTEGER,
    finished_at     INTEGER,
    step_started_at INTEGER,
    observed_image  TEXT    NOT NULL,
    server          TEXT    NOT NULL,
    changed         INTEGER NOT NULL,
    waiting_offline INTEGER NOT NULL,
    failure         TEXT    NOT NULL,
    PRIMARY KEY (rollout_id, agent_id)
);

CREATE TABLE rollout_events (
    rollout_id TEXT    NOT NULL REFERENCES rollouts (id),
    sequence   INTEGER NOT NULL,
    at         INTEGER NOT NULL,
    event      BLOB    NOT NULL,
    PRIMARY KEY (rollout_id, sequence)
);
