// Package endpoint turns the control plane's configured addresses into the
// places an agent dials, and decides which one to try next. Each configured
// host:port is resolved again before every connection attempt, and every
// A/AAAA record of a name is an endpoint of its own, so one DNS name with
// several records spreads a fleet as a list of addresses does; the TLS
// server name stays the configured host name. A Rotation visits the
// endpoints round robin in an order of its own, starting at a random one,
// so that a fleet spreads over the replicas, and the agents of a replica
// that died spread over the others instead of all moving to the same one.
// It counts full cycles, so the caller backs off once per cycle rather than
// once per address.
package endpoint
