// Package postgres is the PostgreSQL implementation of store.Store, on pgx v5
// with a connection pool: the production store, on the database the team
// already runs (e.g. RDS). It has the semantics of the SQLite store (package
// sqlite), which the conformance suite in package storetest holds both to,
// and the same schema versions.
//
// It connects to a primary only (target_session_attrs=read-write, forced),
// and every error that comes from the database being away (connection
// refused or lost, an administrator shutdown, a failover) wraps
// store.ErrUnavailable, so that callers retry and the API answers
// Unavailable; errors of the request itself do not.
package postgres
