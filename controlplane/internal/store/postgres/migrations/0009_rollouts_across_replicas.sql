-- 0009: rollouts across replicas (SQLite's 0009). rollout_controls keeps
-- operators' requests (pause, resume, abort) made on a replica that does not
-- drive the rollout: the replica holding the rollout's lease reads the
-- pending ones (answered_at NULL) every poll interval, applies them in seq
-- order and stores its answer (code: the answer's gRPC status code, 0 when
-- applied) under its fence; the replica that took the request waits for it.
-- rollout_hosts.healthy_since is the start of a host's healthy streak in its
-- health gate, so that a replica taking the rollout over keeps counting it
-- instead of starting again from zero. Times are BIGINT Unix nanoseconds, as
-- in the other rollout tables.

CREATE TABLE rollout_controls (
    seq          BIGSERIAL PRIMARY KEY,
    rollout_id   TEXT COLLATE "C" NOT NULL REFERENCES rollouts (id),
    op           TEXT    NOT NULL,
    reason       TEXT    NOT NULL,
    rollback     BOOLEAN NOT NULL,
    requested_at BIGINT  NOT NULL,
    answered_at  BIGINT,
    code         INTEGER NOT NULL,
    answer       TEXT    NOT NULL
);

CREATE INDEX rollout_controls_pending ON rollout_controls (rollout_id, seq) WHERE answered_at IS NULL;

ALTER TABLE rollout_hosts ADD COLUMN healthy_since BIGINT;
