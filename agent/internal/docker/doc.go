// Package docker carries out the agent's Docker commands — pull an image,
// restart or re-create a managed container — through the Docker Engine
// API, behind the guard rails of the agent's configuration (allowed
// registries, managed containers). It also lists the managed containers
// and reads their resource use (CPU, memory working set and limit,
// restarts, OOM kills) for the heartbeats.
package docker
