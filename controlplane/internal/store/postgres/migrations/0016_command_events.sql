-- command_events (issue 13; migration number 0019 as assigned, numbered
-- after the last one of the branch it lands on): every event of a fleet
-- command's host commands as the replica driving it made it (state
-- changes and progress alike), in seq order, so that WatchCommand on any
-- replica sends every event, not the host rows' latest states. They are
-- written in the transaction of the host commands' changes, under the
-- same advisory lock as host_commands (one commit order for both tables:
-- a reader that has seen seq N never later finds a committed event below
-- it, and a snapshot read in one transaction shows exactly the events up
-- to its last seq), and wake the replicas on flotilla_commands. Pruned
-- with the command reports, an hour after their command finished.

CREATE TABLE command_events (
    seq              BIGSERIAL PRIMARY KEY,
    fleet_command_id TEXT COLLATE "C" NOT NULL,
    agent_id         TEXT COLLATE "C" NOT NULL,
    event            BYTEA  NOT NULL,
    created_at       BIGINT NOT NULL
);

CREATE INDEX command_events_command ON command_events (fleet_command_id, seq);

CREATE FUNCTION flotilla_command_events_write() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(7384201659001); -- host_commands writers
    PERFORM pg_notify('flotilla_commands', '');
    RETURN NULL;
END $$;

CREATE TRIGGER command_events_write BEFORE INSERT ON command_events
    FOR EACH STATEMENT EXECUTE FUNCTION flotilla_command_events_write();
