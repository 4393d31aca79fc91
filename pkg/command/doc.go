// Package command holds the meaning of a command both programs share: the
// kinds of a CommandSpec (the names logs, metrics, the store and the
// agent's executors use) and the lifecycle of a CommandState (which states
// are terminal, how states rank so that an update never moves a command
// back, and their short names).
package command
