// Package commands runs the commands the control plane sends: it journals
// each one before acting, executes each command ID at most once through the
// executor of its kind, streams its events, and enforces cancels and
// deadlines.
//
// Delivery is at-least-once (the control plane resends a command until it
// hears an outcome) and execution at-most-once: a command already in the
// journal is never run again; its latest event is sent again instead. Every
// event is journaled before it is sent, so an event the stream loses reaches
// the control plane in the journal report of the next stream.
package commands
