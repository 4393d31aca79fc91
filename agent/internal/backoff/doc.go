// Package backoff computes capped, jittered exponential delays for retry loops.
//
// A fleet of agents that lost the control plane at the same moment must not
// reconnect at the same moment: the jitter spreads them out, the cap bounds how
// long an agent stays away once the control plane is back.
package backoff
