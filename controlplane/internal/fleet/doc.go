// Package fleet keeps the live view of every registered agent: its labels,
// its stream, its last heartbeat and its liveness (connected, disconnected,
// lost). The registry is the single in-memory source of truth for the API
// and metrics; the store is written behind it in batches, so a heartbeat
// costs a map update, not a disk write.
package fleet
