-- 0006: leases (SQLite's 0006). A lease gives one holder (one control-plane
-- process) the right to drive a piece of work until expires_at, which comes
-- from the database's clock (now()), never a holder's. token is the fencing
-- token: it increases by one every time the lease changes holder, and a row
-- is never deleted, so a token is never handed out twice.

CREATE TABLE leases (
    name       TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    holder     TEXT        NOT NULL,
    token      BIGINT      NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
