-- 0003: services and rollouts (SQLite's 0003). Definitions (a service, a
-- rollout's plan) are serialized protobuf in BYTEA; the progress the engine
-- moves and the host steps are plain columns. Events are numbered per
-- rollout and written in the same transaction as the change they describe.

CREATE TABLE services (
    name       TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    spec       BYTEA  NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE rollouts (
    id                TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    service           TEXT COLLATE "C" NOT NULL REFERENCES services (name),
    image             TEXT    NOT NULL,
    rollback_of       TEXT    NOT NULL,
    created_by        TEXT    NOT NULL,
    definition        BYTEA   NOT NULL,
    service_spec      BYTEA   NOT NULL,
    load_balancers    TEXT    NOT NULL,
    state             INTEGER NOT NULL,
    message           TEXT    NOT NULL,
    current_batch     INTEGER NOT NULL,
    prepared          BOOLEAN NOT NULL,
    batch_started_at  BIGINT,
    batch_finished_at BIGINT,
    stop              TEXT    NOT NULL,
    stop_rollback     BOOLEAN NOT NULL,
    stop_state        INTEGER NOT NULL,
    created_at        BIGINT  NOT NULL,
    finished_at       BIGINT
);

-- One active (unfinished) rollout per service, whatever the engine checks.
CREATE UNIQUE INDEX rollouts_one_active ON rollouts (service) WHERE finished_at IS NULL;
CREATE INDEX rollouts_service_created ON rollouts (service, created_at, id);
CREATE INDEX rollouts_created ON rollouts (created_at, id);

CREATE TABLE rollout_hosts (
    rollout_id      TEXT COLLATE "C" NOT NULL REFERENCES rollouts (id),
    agent_id        TEXT COLLATE "C" NOT NULL,
    batch           INTEGER NOT NULL,
    step            INTEGER NOT NULL,
    rolling_back    BOOLEAN NOT NULL,
    previous_image  TEXT    NOT NULL,
    message         TEXT    NOT NULL,
    started_at      BIGINT,
    finished_at     BIGINT,
    step_started_at BIGINT,
    observed_image  TEXT    NOT NULL,
    server          TEXT    NOT NULL,
    changed         BOOLEAN NOT NULL,
    waiting_offline BOOLEAN NOT NULL,
    failure         TEXT    NOT NULL,
    PRIMARY KEY (rollout_id, agent_id)
);

CREATE TABLE rollout_events (
    rollout_id TEXT COLLATE "C" NOT NULL REFERENCES rollouts (id),
    sequence   BIGINT NOT NULL,
    at         BIGINT NOT NULL,
    event      BYTEA  NOT NULL,
    PRIMARY KEY (rollout_id, sequence)
);
