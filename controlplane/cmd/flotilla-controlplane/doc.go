// Command flotilla-controlplane is Flotilla's central service: the fleet
// inventory, the agents' streams, commands and rolling deploys, the
// operator API (gRPC, with server reflection for grpcurl) and /metrics.
// It parses its configuration and hands it to package server, which
// builds and runs everything else.
package main
