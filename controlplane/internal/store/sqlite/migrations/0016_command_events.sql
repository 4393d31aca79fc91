-- command_events (PostgreSQL's migration of the same number, which says
-- what they are for; assigned 0019, numbered after the last one of the
-- branch it lands on). One control plane writes them here (SQLite has no
-- replicas), so seq order is commit order; AUTOINCREMENT never reuses a
-- pruned seq.

CREATE TABLE command_events (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    fleet_command_id TEXT    NOT NULL,
    agent_id         TEXT    NOT NULL,
    event            BLOB    NOT NULL,
    created_at       INTEGER NOT NULL
);

CREATE INDEX command_events_command ON command_events (fleet_command_id, seq);
