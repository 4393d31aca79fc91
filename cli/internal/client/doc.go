// Package client opens the gRPC connection of the flotilla command: TLS to
// the control plane (its CA from a file, or the system's roots), with an
// operator API token as "authorization: Bearer" metadata on every call or an
// operator certificate as the TLS client certificate.
package client
