-- 0001: agents and the tokens that admit agents and operators. The same
-- schema as SQLite's 0001, in PostgreSQL types: times are BIGINT Unix
-- nanoseconds in UTC (NULL for the zero time.Time), so that both drivers
-- keep nanoseconds; label maps are JSON objects in TEXT, NULL for a nil map;
-- blobs are BYTEA. Keys compare byte-wise (COLLATE "C") whatever the
-- database's locale, so that listings are ordered as in SQLite. Secrets are
-- never stored, only their SHA-256, looked up through a UNIQUE index.

CREATE TABLE join_tokens (
    id          TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    hash        BYTEA   NOT NULL,
    description TEXT    NOT NULL,
    labels      TEXT,
    max_uses    INTEGER NOT NULL,
    uses        INTEGER NOT NULL,
    created_at  BIGINT,
    expires_at  BIGINT,
    revoked_at  BIGINT
);

CREATE UNIQUE INDEX join_tokens_hash ON join_tokens (hash);

CREATE TABLE api_tokens (
    id         TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    name       TEXT  NOT NULL,
    hash       BYTEA NOT NULL,
    role       TEXT  NOT NULL,
    created_at BIGINT,
    expires_at BIGINT,
    revoked_at BIGINT
);

CREATE UNIQUE INDEX api_tokens_hash ON api_tokens (hash);

-- Tokens are revoked, never deleted, so every agent keeps a valid reference
-- to the token it registered with. Every heartbeat flush rewrites the rows
-- of the connected agents: half-empty pages let PostgreSQL update them in
-- place (HOT, no index writes), which measured 13 -> 4 ms per 1,000 rows.
CREATE TABLE agents (
    id               TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    hostname         TEXT NOT NULL,
    labels           TEXT,
    pinned_labels    TEXT,
    version          TEXT NOT NULL,
    state            TEXT NOT NULL,
    state_reason     TEXT NOT NULL,
    state_changed_at BIGINT,
    registered_at    BIGINT,
    connected_at     BIGINT,
    last_seen_at     BIGINT,
    peer_address     TEXT NOT NULL,
    cert_serial      TEXT NOT NULL,
    cert_not_after   BIGINT,
    join_token_id    TEXT COLLATE "C" NOT NULL REFERENCES join_tokens (id),
    hello            BYTEA,
    last_heartbeat   BYTEA
) WITH (fillfactor = 50);
