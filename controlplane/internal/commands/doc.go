// Package commands delivers commands to agents and runs fleet commands.
//
// The Dispatcher owns host commands: it stores each one before sending it,
// sends it whenever its agent is connected (again after every reconnect —
// the agent's journal makes a resend harmless), applies the agent's events
// in order, and ends commands whose deadline passed. Its state belongs to
// one goroutine (loop.go): callers queue requests and wait; the owner takes
// them in turns, stores each turn in one transaction, applies it, sends,
// then tells the listeners in order. The Manager sits on top and starts
// RunCommand's fleet commands: it releases hosts within max_concurrency,
// stops starting new ones at max_errors, and keeps the watchers informed.
package commands
