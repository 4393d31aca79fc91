// Package procfs reads what the benchmarks measure from Linux's /proc: a
// process's resident memory and CPU time as the kernel accounts them, its
// open-file limit, and the machine's CPU and memory.
package procfs
