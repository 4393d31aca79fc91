// Package server assembles the control plane: store, CA, registry, gRPC
// services and the HTTP endpoint for /metrics and /healthz, and runs them
// until the context ends.
package server
