-- 0014: memory-leak remediation (issue 16 item 3): every automatic
-- restart, escalation of the guard rails and OOM kill the remediation
-- driver saw. The hourly guard (at most N restarts per host per hour)
-- counts the restarts stored here, so that a restart of the control plane
-- or a new holder of the driver's lease does not forget them; the restart
-- in flight is its rollout (created_by system:remediation), which the
-- rollout engine already keeps.

CREATE TABLE remediations (
    id          TEXT PRIMARY KEY,
    service     TEXT NOT NULL,
    agent_id    TEXT NOT NULL,
    action      TEXT NOT NULL,
    reason      TEXT NOT NULL,
    evidence    TEXT NOT NULL,
    rollout_id  TEXT NOT NULL,
    occurred_at BIGINT NOT NULL
);

CREATE INDEX remediations_by_service ON remediations (service, occurred_at);
CREATE INDEX remediations_by_time ON remediations (occurred_at);
