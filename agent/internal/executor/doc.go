// Package executor is the contract between the agent's command runner and
// the code that carries out each kind of command (docker, backup, nginx).
// The runner owns delivery (journal, at-most-once, events, cancel,
// deadlines); an Executor only checks and does the work.
package executor
