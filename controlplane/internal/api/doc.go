// Package api implements the control plane's gRPC services on top of the
// fleet registry, the store and the CA. Handlers validate every request
// first and answer with status codes that tell the caller what to do.
package api
