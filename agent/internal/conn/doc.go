// Package conn keeps the agent's stream to the control plane: it dials with
// mTLS, opens AgentService.Connect, says hello, waits for the welcome, sends
// the journal report and heartbeats, hands commands to the command runner,
// carries its events, and reconnects whenever the stream ends. With several
// control plane endpoints (package endpoint) it starts at a random one and
// moves to the next one when its stream ends or an attempt fails; the
// capped, jittered backoff applies once per full cycle of failures.
package conn
