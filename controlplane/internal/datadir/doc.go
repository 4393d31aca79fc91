// Package datadir guards the control plane's data directory: one process
// at a time drives a SQLite store, through an exclusive lock on a file in
// the directory that names its holder.
package datadir
