-- 0008: commands across replicas (SQLite's 0008). Every write of a host
-- command gives it the next change_seq, so that a replica catches up on the
-- changes made by the others by reading the rows after the last seq it saw;
-- cancel_reason keeps a requested cancel, so that the replica holding the
-- agent's stream can deliver it. command_reports carries the events an
-- agent sent to a replica that does not drive the command, in seq order, to
-- the one that does.
--
-- change_seq is the column's default on insert, and every UPDATE of
-- host_commands sets it to nextval('host_command_changes') (the driver's
-- UpdateHostCommands does; a row trigger doing it cost about twice the
-- update itself). A reader that has seen seq N must never later find a
-- committed row below N: writers of each table therefore take a
-- transaction-level advisory lock before they draw from its sequence (a
-- statement trigger, which runs before any row is written, COPY included),
-- which makes commit order seq order. The same trigger sends the table's
-- NOTIFY, delivered at commit and carrying no data (a wake-up; readers catch
-- up from the table).

CREATE SEQUENCE host_command_changes;

ALTER TABLE host_commands
    ADD COLUMN change_seq BIGINT,
    ADD COLUMN cancel_reason TEXT NOT NULL DEFAULT '';

UPDATE host_commands SET change_seq = nextval('host_command_changes');

ALTER TABLE host_commands ALTER COLUMN change_seq SET NOT NULL,
    ALTER COLUMN change_seq SET DEFAULT nextval('host_command_changes');

CREATE INDEX host_commands_change ON host_commands (change_seq);

CREATE FUNCTION flotilla_host_commands_write() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(7384201659001); -- host_commands writers
    PERFORM pg_notify('flotilla_commands', '');
    RETURN NULL;
END $$;

CREATE TRIGGER host_commands_write BEFORE INSERT OR UPDATE ON host_commands
    FOR EACH STATEMENT EXECUTE FUNCTION flotilla_host_commands_write();

CREATE TABLE command_reports (
    seq         BIGSERIAL PRIMARY KEY,
    command_id  TEXT COLLATE "C" NOT NULL,
    agent_id    TEXT COLLATE "C" NOT NULL,
    event       BYTEA  NOT NULL,
    received_at BIGINT NOT NULL
);

CREATE INDEX command_reports_command ON command_reports (command_id);

CREATE FUNCTION flotilla_command_reports_write() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(7384201659002); -- command_reports writers
    PERFORM pg_notify('flotilla_reports', '');
    RETURN NULL;
END $$;

CREATE TRIGGER command_reports_write BEFORE INSERT ON command_reports
    FOR EACH STATEMENT EXECUTE FUNCTION flotilla_command_reports_write();
