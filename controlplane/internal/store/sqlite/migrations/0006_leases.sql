-- 0006: leases. A lease gives one holder (one control-plane process) the
-- right to drive a piece of work until expires_at. token is the fencing
-- token: it increases by one every time the lease changes holder, and a
-- row is never deleted, so a token is never handed out twice. Times are
-- INTEGER Unix nanoseconds in UTC; in SQLite the process clock is the
-- database's clock.

CREATE TABLE leases (
    name       TEXT    NOT NULL PRIMARY KEY,
    holder     TEXT    NOT NULL,
    token      INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
