-- 0008: commands across replicas (PostgreSQL's 0008). Every write of a host
-- command gives it the next change_seq; cancel_reason keeps a requested
-- cancel; command_reports carries agents' events in seq order (see the
-- PostgreSQL migration for how replicas use them).
--
-- SQLite serves one control plane, whose writes are serialized on one
-- connection, so seq order is commit order by construction. The store
-- reserves change seqs in blocks in the sequences row and hands them out
-- from memory (no extra statement per transaction), and change_seq is not
-- indexed: with one process nothing follows the feed, and an index on a
-- column every command write changes would slow every write.
-- command_reports.seq is AUTOINCREMENT so that a pruned seq is never reused.

CREATE TABLE sequences (
    name  TEXT    NOT NULL PRIMARY KEY,
    value INTEGER NOT NULL
);

ALTER TABLE host_commands ADD COLUMN change_seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE host_commands ADD COLUMN cancel_reason TEXT NOT NULL DEFAULT '';

UPDATE host_commands SET change_seq = rowid;

INSERT INTO sequences (name, value) SELECT 'host_command_changes', COALESCE(MAX(change_seq), 0) FROM host_commands;

CREATE TABLE command_reports (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    command_id  TEXT    NOT NULL,
    agent_id    TEXT    NOT NULL,
    event       BLOB    NOT NULL,
    received_at INTEGER NOT NULL
);

CREATE INDEX command_reports_command ON command_reports (command_id);
