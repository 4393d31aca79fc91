package rollout_test

import (
	"testing"
	"time"

	"flotilla.dev/controlplane/internal/rollout"
)

// TestStartWaitsForReconnectingHosts: a host whose stream closed a moment
// before the start (a replica's rebalancer moved it, as in the failover
// tests) is planned with the others once it is back, not left out as
// offline; a host that stays away is left out after the grace.
func TestStartWaitsForReconnectingHosts(t *testing.T) {
	t.Run("back within the grace", func(t *testing.T) {
		t.Parallel()
		c := newCluster(t, clusterOptions{web: 3})
		c.start()
		c.putService(nil)
		comeBack := c.dropStream(c.agents[2])
		go func() {
			time.Sleep(300 * time.Millisecond)
			comeBack()
		}()
		r := c.startRollout(newImage, strategy(3))
		if len(r.GetHosts()) != 3 || len(r.GetExcluded()) != 0 {
			t.Fatalf("the start left out the reconnecting host:\n%s", describe(r))
		}
		r = c.waitState(r.GetId(), finalStates...)
		if r.GetState() != stateSucceeded || c.agents[2].currentImage() != newImage {
			t.Fatalf("rollout:\n%s", describe(r))
		}
	})
	t.Run("away past the grace", func(t *testing.T) {
		t.Parallel()
		c := newCluster(t, clusterOptions{web: 3})
		c.start()
		c.putService(nil)
		rollout.SetReconnectGrace(c.engine(), 300*time.Millisecond)
		c.dropStream(c.agents[2])
		r := c.startRollout(newImage, strategy(3))
		if ex := r.GetExcluded(); len(r.GetHosts()) != 2 || len(ex) != 1 || ex[0].GetAgentId() != "web-03" || ex[0].GetReason() != rollout.ReasonOffline {
			t.Fatalf("want web-03 left out as offline:\n%s", describe(r))
		}
		if r = c.waitState(r.GetId(), finalStates...); r.GetState() != stateSucceeded {
			t.Fatalf("rollout:\n%s", describe(r))
		}
	})
}
