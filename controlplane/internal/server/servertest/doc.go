// Package servertest runs the real control plane in process for tests: it is
// built by server.New and served by Server.Run exactly as the binary does,
// with gRPC over bufconn and the HTTP endpoint (/metrics, /healthz) on
// loopback. What differs between tests is given by options: the store, the
// configuration, the clock, the loops' intervals, the logger.
//
// The store comes from WithStore; without it every control plane runs on
// the driver FLOTILLA_TEST_STORE selects (see StoreEnv): SQLite in its data
// directory (t.TempDir() by default), or a PostgreSQL database of its own
// per data directory. An opener given to WithStore must reach the same
// database on every call (a control plane started again by Restart must
// find its state).
//
// StartReplicas starts several control planes on one PostgreSQL database
// with one CA, as an operator runs replicas: each in a data directory of
// its own, with its own server certificate and a copy of the first one's
// admin token.
package servertest
