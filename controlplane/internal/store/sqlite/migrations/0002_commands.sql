-- 0002: commands. A fleet command (RunCommand) fans out into one host
-- command per agent; host commands are also what other subsystems (the
-- rollout engine) issue. Definitions are serialized protobuf in BLOBs so the
-- schema does not change with command kinds.

CREATE TABLE fleet_commands (
    id          TEXT    NOT NULL PRIMARY KEY,
    kind        TEXT    NOT NULL,
    request     BLOB    NOT NULL,
    created_by  TEXT    NOT NULL,
    state       INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    finished_at INTEGER,
    summary     TEXT    NOT NULL DEFAULT ''
);

CREATE INDEX fleet_commands_created ON fleet_commands (created_at, id);

CREATE TABLE host_commands (
    id               TEXT    NOT NULL PRIMARY KEY,
    fleet_command_id TEXT    REFERENCES fleet_commands (id),
    agent_id         TEXT    NOT NULL,
    kind             TEXT    NOT NULL,
    spec             BLOB    NOT NULL,
    state            INTEGER NOT NULL,
    message          TEXT    NOT NULL,
    result           BLOB,
    created_at       INTEGER NOT NULL,
    released_at      INTEGER,
    deadline         INTEGER,
    sent_at          INTEGER,
    started_at       INTEGER,
    finished_at      INTEGER
);

CREATE INDEX host_commands_fleet ON host_commands (fleet_command_id, agent_id);
CREATE INDEX host_commands_active ON host_commands (finished_at, agent_id);
