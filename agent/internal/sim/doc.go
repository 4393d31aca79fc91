// Package sim runs a fleet of simulated agents in one process. Each one is
// a real agent.Agent — registration with a join token, its own key and
// certificate, the mTLS stream, heartbeats, the command runner and its
// journal, certificate renewal — whose executors and readings are
// simulated (package-level host): commands take a configurable latency and
// fail at a configurable rate, and the application's health can be made to
// fail. Only the machine is fake; the protocol, the control plane's load
// and the agent's code paths are the ones a real fleet exercises.
//
// Agents connect from several loopback source addresses (127.x.y.z) so
// that a large fleet does not run out of ephemeral ports towards the one
// control-plane address.
package sim
