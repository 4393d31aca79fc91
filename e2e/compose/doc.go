// Package compose starts the demo fleet of deploy/compose/docker-compose.yml
// as a new user does, with docker-compose and the images `make images
// demo-images` builds, under a project name of its own, and checks that it
// comes up on the first `up` with nothing copied from a running control
// plane, and that the agents pull from the demo's registry. It removes its
// project (containers, network, volumes) and the image tag it pushed at the
// end, failed or not, and nothing else.
package compose
