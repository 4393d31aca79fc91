// Command flotilla-bench measures the figures of issue 7 against real
// processes — the control plane, simulated fleets (flotilla-sim), the real
// agent — prints them and appends them, with the date, commit and
// machine, to the results file (bench/results.md).
//
//	flotilla-bench connect -agents 5000
//	flotilla-bench fanout -agents 10000 -runs 5
//	flotilla-bench all -agents 500 -quick
//	flotilla-bench connect -replicas 3 -store postgres -agents 50000
//
// Every subcommand starts its own control plane on a fresh data directory
// under /dev/shm and stops everything it started when it ends, fails or
// is interrupted. With -replicas N (connect, heartbeats, fanout; needs
// -store postgres) it starts N control planes on one throwaway PostgreSQL
// database, sharing the first one's CA; each simulated agent starts at a
// random replica, and each replica's agents, memory, CPU and heartbeats
// are read from its own /proc entry and /metrics.
package main
