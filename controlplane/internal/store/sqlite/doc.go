// Package sqlite is the embedded implementation of store.Store, on the pure Go
// SQLite driver modernc.org/sqlite (no cgo, so binaries stay static).
//
// A Store keeps two connection pools on the same file. Writes go through a
// pool of exactly one connection whose transactions begin IMMEDIATE: SQLite
// admits one writer at a time anyway, and queueing writers in database/sql is
// cheaper and more predictable than letting them collide and retry on
// SQLITE_BUSY. Reads go through a separate read-only pool; in WAL mode they
// never wait for the writer.
package sqlite
