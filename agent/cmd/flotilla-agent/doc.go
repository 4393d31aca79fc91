// Command flotilla-agent runs on every host of the fleet: it registers with
// the control plane, keeps a stream to it, reports host metrics and the
// application's health, and executes the commands the control plane sends
// (pull, restart, backup, drain, undrain). See internal/config for its
// configuration and internal/agent for how it is assembled.
package main
