// Package journal is the agent's command journal: an embedded bbolt file in
// the state directory that records every command the agent received, before
// it acts on it, with the last event of its execution.
//
// The journal is what makes execution at-most-once across duplicate
// deliveries, reconnects and restarts: Begin inserts a command ID only if it
// is absent, in one fsynced transaction, and a command is run only by the
// caller that inserted it. Its entries are reported to the control plane
// after every (re)connect, so an outcome the stream lost is never lost for
// good.
package journal
