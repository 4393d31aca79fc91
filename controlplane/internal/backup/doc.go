// Package backup takes the control plane's disaster-recovery archive and
// puts it back: a consistent copy of the SQLite store (for PostgreSQL the
// database is pg_dump's business), the CA certificate and key that every
// agent's certificate chains to, the server certificate and the bootstrap
// admin token, each with its SHA-256 in a manifest. Restored on a new host,
// the archive lets every agent reconnect under its own ID without
// re-enrolling.
package backup
