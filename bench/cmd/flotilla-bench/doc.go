// Command flotilla-bench measures the figures of issue 7 against real
// processes — the control plane, simulated fleets (flotilla-sim), the real
// agent — prints them and appends them, with the date, commit and
// machine, to the results file (bench/results.md).
//
//	flotilla-bench connect -agents 5000
//	flotilla-bench fanout -agents 10000 -runs 5
//	flotilla-bench all -agents 500 -quick
//
// Every subcommand starts its own control plane on a fresh data directory
// under /dev/shm and stops everything it started when it ends, fails or
// is interrupted.
package main
