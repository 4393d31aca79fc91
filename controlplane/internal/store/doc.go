// Package store defines the control plane's persistent state as role
// interfaces (store.go, security.go): AgentStore, TokenStore,
// CommandStore, RolloutStore, IdentityStore and AuditStore, whose union is
// Store, plus LeaseStore, the lease and fencing-token contract that lets
// several control planes share one database. Consumers take the role they
// use, never the whole Store. A driver implements Store: SQLite (package
// sqlite, the embedded default) and PostgreSQL (package postgres, for
// several replicas). The SQL stays portable and every method is one short
// transaction; the driver's errors are the ones declared here
// (ErrNotFound, ErrConflict, ErrUnavailable, …). What the drivers share
// beyond the interfaces is here too, once: the column lists (schema.go),
// the column encodings (columns.go), the embedded migrations' loading and
// ordering (migrations.go) and the token validity rules (tokens.go).
package store
