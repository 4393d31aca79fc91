// Package storetest is the conformance suite of store.Store: every
// driver-neutral test and benchmark of the store, run by each driver's own
// tests against a fresh store of that driver (SQLite in a temporary
// directory, PostgreSQL in a fresh database), so that both drivers are held
// to the same semantics: transactions, ordering, uniqueness, pagination and
// the errors callers branch on.
package storetest
