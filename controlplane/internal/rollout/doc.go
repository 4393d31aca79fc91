// Package rollout is the rollout engine: it moves a service to a new image
// across the hosts its selector matches, batch by batch behind health gates,
// and rolls back on failure.
//
// The engine is a reconciler. Each active rollout has one goroutine (a
// runner) that repeatedly reads its rollout's state and the outcome of its
// host commands and takes the next actions. Every action is first written to
// the store — the rollout's progress, the host's new step, the events that
// describe them and the host commands that carry them out, in one
// transaction — and only then are the commands sent. Command IDs are derived
// from the rollout, the host and the step ("<rollout>.<agent>.<step>"), so a
// control plane that restarts finds each command in the store instead of
// making a new one, and the agent's journal turns a resend into the answer it
// already gave: no host is restarted twice for the same step.
//
// A runner wakes up when one of its commands changes (the dispatcher's
// listener), on a ticker while a health gate, a pause or an offline wait is
// pending, and when an operator pauses, resumes or aborts it.
//
// With several control planes on one PostgreSQL store (Config.Holder set),
// each active rollout is driven by the one replica holding its lease,
// "rollout/<id>", and every transition is written under that lease's fence
// (see replica.go and control.go).
package rollout
