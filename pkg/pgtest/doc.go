// Package pgtest starts throwaway PostgreSQL clusters for tests: initdb in a
// temporary directory, the server run directly (no pg_ctl, whose -o goes
// through a shell), a unix socket in a private directory where the superuser
// "postgres" is trusted, and TCP on 127.0.0.1 with SCRAM passwords. The
// cluster is stopped and removed when the test (or, with Shared, the test
// binary) ends.
//
// A machine without PostgreSQL server binaries skips the test with a message
// that says how to get them, except under FLOTILLA_E2E=1 (CI), where it fails
// the test: nothing is silently skipped there.
package pgtest
