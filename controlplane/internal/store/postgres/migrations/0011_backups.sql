-- 0011: backup policies, their runs and the backup catalog (SQLite's 0011).
-- A policy's definition is serialized protobuf (flotilla.v1.BackupPolicy);
-- a run row per policy and job (backup, drill, prune) holds the last
-- schedule slot that was run and the fleet command running now: the
-- scheduler starts a run only while command_id is '', so two runs of one
-- job never overlap, whichever control plane starts them. The catalog has
-- one row per backup, keyed by the host command that made it; seq orders
-- the listing. Times are BIGINT Unix nanoseconds in UTC, durations BIGINT
-- nanoseconds.

CREATE TABLE backup_policies (
    name       TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    spec       BYTEA  NOT NULL,
    created_by TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE backup_policy_runs (
    policy           TEXT COLLATE "C" NOT NULL REFERENCES backup_policies (name) ON DELETE CASCADE,
    job              TEXT COLLATE "C" NOT NULL,
    last_slot        BIGINT,
    command_id       TEXT    NOT NULL,
    started_at       BIGINT,
    last_command_id  TEXT    NOT NULL,
    last_finished_at BIGINT,
    last_succeeded   BOOLEAN NOT NULL,
    last_message     TEXT    NOT NULL,
    last_success_at  BIGINT,
    PRIMARY KEY (policy, job)
);

CREATE TABLE backups (
    seq              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id               TEXT COLLATE "C" NOT NULL UNIQUE,
    agent_id         TEXT COLLATE "C" NOT NULL,
    database_name    TEXT COLLATE "C" NOT NULL,
    policy           TEXT COLLATE "C" NOT NULL,
    command_id       TEXT    NOT NULL,
    started_at       BIGINT,
    finished_at      BIGINT  NOT NULL,
    size_bytes       BIGINT  NOT NULL,
    sha256           TEXT    NOT NULL,
    uri              TEXT    NOT NULL,
    verified         BOOLEAN NOT NULL,
    drill_at         BIGINT,
    drill_succeeded  BOOLEAN NOT NULL,
    drill_message    TEXT    NOT NULL,
    drill_command_id TEXT    NOT NULL,
    drill_restore_ns BIGINT  NOT NULL,
    drill_rpo_ns     BIGINT  NOT NULL,
    pruned_at        BIGINT,
    name             TEXT COLLATE "C"    NOT NULL,
    backup_type      INTEGER NOT NULL
);

CREATE INDEX backups_by_database ON backups (agent_id, database_name, seq);
CREATE INDEX backups_by_policy ON backups (policy, seq);
CREATE INDEX backups_by_name ON backups (agent_id, name);
