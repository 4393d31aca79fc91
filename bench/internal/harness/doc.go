// Package harness runs the processes a benchmark measures — the control
// plane, simulator processes, a real agent — from the binaries in bin/,
// each with its log in a temporary directory, and cleans all of it up:
// every process is stopped when the benchmark ends, fails or is
// interrupted, and dies with the benchmark if that is killed.
package harness
