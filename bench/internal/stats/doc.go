// Package stats summarizes latency samples as the benchmarks report them:
// nearest-rank percentiles, so that every reported figure is a latency
// that was actually observed.
package stats
