// Package pkg is the root of the module both Flotilla programs share (etcd's
// pkg pattern): the meaning of the protocol — command kinds and states,
// validators of names, images and selectors, limit resolution — and the
// plumbing every long-lived process needs (the task runner, logging set-up).
// It imports gen/ and nothing else of ours; the agent and the control plane
// import it and never each other.
package pkg
