// Package servertest runs the real control plane in process for tests: it is
// built by server.New and served by Server.Run exactly as the binary does,
// with gRPC over bufconn and the HTTP endpoint (/metrics, /healthz) on
// loopback. What differs between tests is given by options: the store, the
// configuration, the clock, the loops' intervals, the logger.
//
// The store comes from WithStore; without it every control plane runs on
// SQLite in its data directory (t.TempDir() by default). To run a suite on
// another driver, pass an opener that reaches the same database on every
// call (a control plane started again by Restart must find its state).
package servertest
