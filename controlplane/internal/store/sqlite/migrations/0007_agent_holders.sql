-- 0007: the fleet view shared by replicas (PostgreSQL's 0007). stream_holder
-- is the holder ID of the replica holding the agent's stream ("" none;
-- always "" with one control plane on SQLite). status_seq is taken anew by
-- every write of the row (registration, status, deregistration,
-- certificate, loss): the largest stored value plus one, read in the
-- writing transaction under SQLite's single writer (rows are never
-- deleted, so the largest value never goes back).

ALTER TABLE agents ADD COLUMN stream_holder TEXT NOT NULL DEFAULT '';
ALTER TABLE agents ADD COLUMN status_seq INTEGER NOT NULL DEFAULT 0;
UPDATE agents SET status_seq = rowid;

CREATE INDEX agents_by_status_seq ON agents (status_seq);
