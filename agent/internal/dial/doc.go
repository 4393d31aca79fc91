// Package dial creates the agent's gRPC client connections to the control
// plane, with the transport settings both registration and the stream need.
package dial
