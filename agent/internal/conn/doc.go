// Package conn keeps the agent's stream to the control plane: it dials with
// mTLS, opens AgentService.Connect, says hello, waits for the welcome, sends
// the journal report and heartbeats, hands commands to the command runner,
// carries its events, and reconnects with a capped, jittered backoff
// whenever the stream ends.
package conn
