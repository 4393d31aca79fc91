// Package commands delivers commands to agents and runs fleet commands.
//
// The Dispatcher owns host commands: it stores each one before sending it,
// sends it whenever its agent is connected (again after every reconnect,
// and when it starts holding a released command read from the store — the
// agent's journal makes a resend harmless), applies the agent's events
// in order, and ends commands whose deadline passed. Its state belongs to
// one goroutine (loop.go): callers queue requests and wait; the owner takes
// them in turns, stores each turn in one transaction, applies it, sends,
// then tells the listeners in order. The Manager sits on top and starts
// RunCommand's fleet commands: it releases hosts within max_concurrency,
// stops starting new ones at max_errors, and keeps the watchers informed.
//
// With several control planes on one PostgreSQL database (replica mode,
// replica.go, manager_replica.go, follow.go), a host command is held by
// the replica driving its work: a fleet command under its lease
// "command/<id>" (taken over by a surviving replica when its driver
// stops), a rollout's commands under the rollout's. The replica holding
// the agent's stream delivers the command (Relay) and stores the agent's
// events for the driver (command_reports); each replica's Follower reads
// the store's changes and reports after the last sequence number it saw,
// woken by LISTEN/NOTIFY and at least every second, so that a lost
// notification only delays. The driver stores every event of its fleet
// commands' hosts with the changes they make (command_events), so that
// WatchCommand on any replica sends each event, in order, after a
// snapshot read at one instant with the last event's seq; GetCommand on
// any replica reads the store.
package commands
