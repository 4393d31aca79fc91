// Package grpcurl drives the control plane with the real grpcurl binary,
// as an engineer at a shell would, for both end-to-end suites (the local
// processes of package e2e and the Docker fleet of package fleet): unary
// calls with a JSON body, server streams followed in the background, and
// the parts of grpcurl's JSON rendering of the API that the tests read.
package grpcurl
