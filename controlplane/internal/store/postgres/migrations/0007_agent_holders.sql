-- 0007: the fleet view shared by replicas (SQLite's 0007). stream_holder is
-- the holder ID of the replica holding the agent's stream ("" none);
-- status_seq comes from a sequence and is taken anew by every write of the
-- row (registration, status, deregistration, certificate, loss), so that a
-- replica reads what changed since the last value it saw, and a loss is
-- written only over the row its decision was made on (compare-and-set).

CREATE SEQUENCE agents_status_seq AS BIGINT;

ALTER TABLE agents
    ADD COLUMN stream_holder TEXT   NOT NULL DEFAULT '',
    ADD COLUMN status_seq    BIGINT NOT NULL DEFAULT nextval('agents_status_seq');

CREATE INDEX agents_by_status_seq ON agents (status_seq);
