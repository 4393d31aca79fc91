-- 0001: agents and the tokens that admit agents and operators.
--
-- Portable on purpose (a PostgreSQL store follows): plain tables, TEXT,
-- INTEGER and BLOB only. Times are INTEGER Unix nanoseconds in UTC, NULL for
-- the zero time.Time (so the Unix epoch itself still round-trips). Label maps
-- are JSON objects in TEXT, NULL for a nil map. Secrets are never stored, only
-- their SHA-256, looked up through a UNIQUE index.

CREATE TABLE join_tokens (
    id          TEXT    NOT NULL PRIMARY KEY,
    hash        BLOB    NOT NULL,
    description TEXT    NOT NULL,
    labels      TEXT,
    max_uses    INTEGER NOT NULL,
    uses        INTEGER NOT NULL,
    created_at  INTEGER,
    expires_at  INTEGER,
    revoked_at  INTEGER
);

CREATE UNIQUE INDEX join_tokens_hash ON join_tokens (hash);

CREATE TABLE api_tokens (
    id         TEXT NOT NULL PRIMARY KEY,
    name       TEXT NOT NULL,
    hash       BLOB NOT NULL,
    role       TEXT NOT NULL,
    created_at INTEGER,
    expires_at INTEGER,
    revoked_at INTEGER
);

CREATE UNIQUE INDEX api_tokens_hash ON api_tokens (hash);

-- Tokens are revoked, never deleted, so every agent keeps a valid reference
-- to the token it registered with.
CREATE TABLE agents (
    id               TEXT NOT NULL PRIMARY KEY,
    hostname         TEXT NOT NULL,
    labels           TEXT,
    pinned_labels    TEXT,
    version          TEXT NOT NULL,
    state            TEXT NOT NULL,
    state_reason     TEXT NOT NULL,
    state_changed_at INTEGER,
    registered_at    INTEGER,
    connected_at     INTEGER,
    last_seen_at     INTEGER,
    peer_address     TEXT NOT NULL,
    cert_serial      TEXT NOT NULL,
    cert_not_after   INTEGER,
    join_token_id    TEXT NOT NULL REFERENCES join_tokens (id),
    hello            BLOB,
    last_heartbeat   BLOB
);
