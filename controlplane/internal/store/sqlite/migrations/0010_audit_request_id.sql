-- 0009: the request ID of each audited call (PostgreSQL's 0009): the
-- x-request-id the call was answered and logged with, so that a caller's
-- error, the call's log lines and its audit row can be matched. Rows
-- written before this version have ''.

ALTER TABLE audit_events ADD COLUMN request_id TEXT NOT NULL DEFAULT '';

CREATE INDEX audit_events_request_id ON audit_events (request_id, id) WHERE request_id <> '';
