-- 0011: backup policies, their runs and the backup catalog. A policy's
-- definition is serialized protobuf (flotilla.v1.BackupPolicy); a run row
-- per policy and job (backup, drill, prune) holds the last schedule slot
-- that was run and the fleet command running now: the scheduler starts a
-- run only while command_id is '', so two runs of one job never overlap.
-- The catalog has one row per backup, keyed by the host command that made
-- it; seq orders the listing. Times are INTEGER Unix nanoseconds in UTC,
-- durations INTEGER nanoseconds.

CREATE TABLE backup_policies (
    name       TEXT    NOT NULL PRIMARY KEY,
    spec       BLOB    NOT NULL,
    created_by TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE backup_policy_runs (
    policy           TEXT    NOT NULL REFERENCES backup_policies (name) ON DELETE CASCADE,
    job              TEXT    NOT NULL,
    last_slot        INTEGER,
    command_id       TEXT    NOT NULL,
    started_at       INTEGER,
    last_command_id  TEXT    NOT NULL,
    last_finished_at INTEGER,
    last_succeeded   INTEGER NOT NULL,
    last_message     TEXT    NOT NULL,
    last_success_at  INTEGER,
    PRIMARY KEY (policy, job)
);

CREATE TABLE backups (
    seq              INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    id               TEXT    NOT NULL UNIQUE,
    agent_id         TEXT    NOT NULL,
    database_name    TEXT    NOT NULL,
    policy           TEXT    NOT NULL,
    command_id       TEXT    NOT NULL,
    started_at       INTEGER,
    finished_at      INTEGER NOT NULL,
    size_bytes       INTEGER NOT NULL,
    sha256           TEXT    NOT NULL,
    uri              TEXT    NOT NULL,
    verified         INTEGER NOT NULL,
    drill_at         INTEGER,
    drill_succeeded  INTEGER NOT NULL,
    drill_message    TEXT    NOT NULL,
    drill_command_id TEXT    NOT NULL,
    drill_restore_ns INTEGER NOT NULL,
    drill_rpo_ns     INTEGER NOT NULL,
    pruned_at        INTEGER,
    name             TEXT    NOT NULL,
    backup_type      INTEGER NOT NULL
);

CREATE INDEX backups_by_database ON backups (agent_id, database_name, seq);
CREATE INDEX backups_by_policy ON backups (policy, seq);
CREATE INDEX backups_by_name ON backups (agent_id, name);
