// Package fakecp is a fake control plane for tests: a real CA, TLS with the
// chain [leaf, CA] and client certificates, and an AgentService served in
// memory over bufconn, or on a real listener (several replicas of one
// control plane share a CA). It is built on the generated server interface,
// not on mocks, so the agent's tests exercise the real gRPC and TLS stacks.
package fakecp
