-- 0009: rollouts across replicas. rollout_controls keeps operators'
-- requests (pause, resume, abort) made on a replica that does not drive the
-- rollout, for the replica that does to apply and answer (code is the
-- answer's gRPC status code, 0 when applied; answered_at NULL while
-- pending). rollout_hosts.healthy_since is the start of a host's healthy
-- streak in its health gate, so that a replica taking the rollout over
-- keeps counting it instead of starting again from zero. Times are INTEGER
-- Unix nanoseconds in UTC. SQLite serves one control plane, which applies
-- its operators' requests at once; the table stays empty there.

CREATE TABLE rollout_controls (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    rollout_id   TEXT    NOT NULL REFERENCES rollouts (id),
    op           TEXT    NOT NULL,
    reason       TEXT    NOT NULL,
    rollback     BOOLEAN NOT NULL,
    requested_at INTEGER NOT NULL,
    answered_at  INTEGER,
    code         INTEGER NOT NULL,
    answer       TEXT    NOT NULL
);

CREATE INDEX rollout_controls_pending ON rollout_controls (rollout_id, seq) WHERE answered_at IS NULL;

ALTER TABLE rollout_hosts ADD COLUMN healthy_since INTEGER;
