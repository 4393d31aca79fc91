package rollouttest

import (
	"testing"
	"time"

	"flotilla.dev/e2e/internal/fixture"
	"flotilla.dev/e2e/internal/grpcurl"
)

// The service every scenario deploys, and its upstream in Nginx.
const (
	Service  = "web"
	Upstream = "web"
)

// Timeout bounds one rollout from StartRollout to its end. It is a
// ceiling for a stuck rollout, not an expectation: a rollout here takes
// 15–60 s, but CI runs the suites next to others on two cores, and one
// run saw a canary's restart take 19 s and a fault rollout still rolling
// back at 90 s.
const Timeout = 4 * time.Minute

// LoadWorkers is how many clients send requests through Nginx during a
// rollout.
const LoadWorkers = 4

// Fleet is a running control plane with application hosts behind an
// Nginx upstream, each host's application in a Docker container that its
// agent restarts, and a load-balancer agent that drains them.
type Fleet interface {
	// API is grpcurl against the control plane.
	API() grpcurl.Client
	// Docker is the engine the application containers run in.
	Docker() *fixture.Docker
	// Nginx is the load balancer; its upstream Upstream lists the hosts.
	Nginx() *fixture.Nginx
	// Images are the application's releases by version (v1, v2,
	// fixture.VersionUnhealthy).
	Images() map[string]string
	// AppHosts are the application hosts the service runs on.
	AppHosts() []Host
}

// Host is one application host.
type Host struct {
	// Name is the agent's hostname.
	Name string
	// AgentID is the agent's ID.
	AgentID string
	// Container is the application container's name in Docker.
	Container string
	// Server is the application's address in the upstream (host:port).
	Server string
}

// URL is where the test reaches the host's application.
func (h Host) URL() string { return "http://" + h.Server + "/" }

// HostOf returns the application host of an agent ID.
func HostOf(t testing.TB, f Fleet, agentID string) Host {
	t.Helper()
	for _, h := range f.AppHosts() {
		if h.AgentID == agentID {
			return h
		}
	}
	t.Fatalf("agent %s is not an application host", agentID)
	return Host{}
}
