// Package pkg is the root of the module both Flotilla programs share (etcd's
// pkg pattern): the meaning of the protocol and the plumbing every
// long-lived process needs, written once.
//
//   - command: command kinds (Kind, Kinds) and states (Terminal, Rank,
//     StateName).
//   - validate: the grammar of image references, container, database and
//     upstream names, server addresses, labels and free text.
//   - limit: a Limit (count or percentage of N) resolved and checked.
//   - run: the task runner (first return cancels the rest, panics become
//     errors) and two-step graceful stop.
//   - logging: the zap logger (JSON in production, console in development).
//
// It imports gen/ and nothing else of ours; the agent and the control plane
// import it and never each other. What only one program uses (the label
// selector parser, gRPC status mapping) stays in that program.
package pkg
