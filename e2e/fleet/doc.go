// Package fleet runs Flotilla as users run it: the control plane and
// five agents as containers of the project's own images
// (flotilla-controlplane:latest and flotilla-agent:latest, which
// `make images` builds FROM scratch) on a private Docker network, each
// agent managing its own application container, driven from the host
// with the real grpcurl. Everything it creates carries the label
// flotilla.test=<run ID> and is removed at the end, failed or not.
package fleet
