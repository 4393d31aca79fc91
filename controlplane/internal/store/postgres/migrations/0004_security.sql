-- 0004: security (SQLite's 0004). Deregistered agents (their certificates
-- are refused for good, across restarts), who created an operator token,
-- and the audit trail of mutating calls.

ALTER TABLE agents ADD COLUMN deregistered_at BIGINT;
ALTER TABLE agents ADD COLUMN deregister_reason TEXT NOT NULL DEFAULT '';

ALTER TABLE api_tokens ADD COLUMN created_by TEXT NOT NULL DEFAULT '';

-- One row per mutating call. The row is written before the call runs and
-- its outcome (code, message, duration_ns) after; code is '' while the call
-- runs, and stays '' when the control plane stopped in between. The request
-- is JSON with secrets redacted. IDs increase with every event.
CREATE TABLE audit_events (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          BIGINT NOT NULL,
    principal   TEXT   NOT NULL,
    role        TEXT   NOT NULL,
    method      TEXT   NOT NULL,
    request     TEXT   NOT NULL,
    peer        TEXT   NOT NULL,
    code        TEXT   NOT NULL,
    message     TEXT   NOT NULL,
    duration_ns BIGINT NOT NULL
);

CREATE INDEX audit_events_principal ON audit_events (principal, id);
CREATE INDEX audit_events_method ON audit_events (method, id);
CREATE INDEX audit_events_at ON audit_events (at);
