// Command flotilla-sim runs a fleet of simulated agents against a control
// plane: each is the real agent (registration, mTLS stream, heartbeats,
// command runner and journal) with simulated executors and readings. It
// serves its counters as JSON on -status-address for the benchmarks in
// bench/.
//
//	flotilla-sim -control-plane 127.0.0.1:7443 -ca-sha256 <pin> \
//	  -join-token-file token -agents 5000 -state-root /dev/shm/sim \
//	  -source-first 127.1.0.1 -source-count 32
package main
