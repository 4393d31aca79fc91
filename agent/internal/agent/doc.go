// Package agent assembles the flotilla agent from its parts: identity
// (enroll), host metrics, application health, the control-plane stream, and
// the command runner with its journal and executors.
package agent
