package agent

import (
	"net"
	"path/filepath"
	"testing"
	"time"

	"flotilla.dev/agent/internal/backoff"
	"flotilla.dev/agent/internal/fakecp"
)

// TestSeveralControlPlaneAddresses runs the agent with
// control_plane.addresses naming two replicas of one control plane (one CA):
// it registers and connects at one, and once that one dies it is back on
// the other with the identity it registered.
func TestSeveralControlPlaneAddresses(t *testing.T) {
	ca, err := fakecp.NewCA("replicas CA")
	if err != nil {
		t.Fatal(err)
	}
	var replicas []*fakecp.Server
	var addrs []string
	for range 2 {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		s := fakecp.StartWith(t, fakecp.Options{CA: ca, Listener: lis})
		replicas = append(replicas, s)
		addrs = append(addrs, s.Addr())
	}
	cfg := testConfig(t, replicas[0], filepath.Join(t.TempDir(), "state"))
	cfg.ControlPlane.Address = ""
	cfg.ControlPlane.Addresses = addrs
	cfg.DialOptions = nil // real TCP
	cfg.Backoff = backoff.Config{Initial: 20 * time.Millisecond, Max: 200 * time.Millisecond}
	runAgent(t, cfg)

	first := waitForStream(t, replicas, -1)
	if got := replicas[0].Registrations() + replicas[1].Registrations(); got != 1 {
		t.Fatalf("%d registrations, want 1", got)
	}
	replicas[first].Stop()
	second := waitForStream(t, replicas, first)
	if got := replicas[second].Registrations() + replicas[first].Registrations(); got != 1 {
		t.Errorf("%d registrations, want 1: the agent reconnects with its identity", got)
	}
}

// waitForStream polls until a replica other than skip welcomed a stream.
func waitForStream(t *testing.T, replicas []*fakecp.Server, skip int) int {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		for i, r := range replicas {
			if i != skip && r.Streams() > 0 {
				return i
			}
		}
		time.Sleep(5 * time.Millisecond) // poll interval
	}
	t.Fatal("no replica welcomed the agent within 30s")
	return -1
}
