// Package run runs a program's long-lived tasks together and stops things
// gracefully within a deadline.
//
// Every long-lived loop of the agent and the control plane is a Task: it
// runs until its context is cancelled (then returns nil) or until it
// cannot go on. All starts them together; the first to return cancels the
// others, so a program never keeps running half-alive; a panic in a task
// becomes an error instead of killing the process without a log line.
package run
