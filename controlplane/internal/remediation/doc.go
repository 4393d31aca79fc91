// Package remediation decides when a service's container is restarted for
// its memory (issue 16 item 3): it reads the working set each agent
// reports per heartbeat, detects a threshold exceeded for a sustained time
// or a steady growth, tells OOM kills from planned restarts, and applies
// the guard rails that bound automatic restarts (per host per hour, the
// service's max_unavailable hosts at once, never during a rollout of the
// service), escalating when a host keeps needing restarts.
package remediation
