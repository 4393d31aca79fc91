// Package logging adapts the control plane's zap logger (built by
// flotilla.dev/pkg/logging) to go-grpc-middleware's logging interceptors.
package logging
