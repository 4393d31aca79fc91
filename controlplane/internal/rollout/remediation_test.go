package rollout_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"flotilla.dev/controlplane/internal/rollout"
)

// TestStartRemediation: an automatic restart runs as a rollout of the
// named hosts only, in place on the image they run (no pull, a restart
// without an image), drained and undrained on the load balancer and
// health-gated, by the remediation actor; it is no revision of the
// service, and refused while the service has an active rollout.
func TestStartRemediation(t *testing.T) {
	c := newCluster(t, clusterOptions{web: 3, lb: true})
	c.start()
	c.putService(strategy(3))
	if err := c.engine().StartRemediation(operator(), "ro-rem-1", serviceName, []string{"web-02"}, "threshold",
		[]string{"web-02: working set 95.0 MiB above 80.0 MiB for 10s"}); err != nil {
		t.Fatalf("StartRemediation: %v", err)
	}
	r := c.waitState("ro-rem-1", stateSucceeded, stateFailed, stateRolledBack)
	if r.GetState() != stateSucceeded || r.GetCreatedBy() != rollout.RemediationActor || r.GetRemediation().GetReason() != "threshold" {
		t.Fatalf("automatic restart ended %s by %s (%v):\n%s", r.GetState(), r.GetCreatedBy(), r.GetRemediation(), describe(r))
	}
	if len(r.GetBatches()) != 1 || !slices.Equal(r.GetBatches()[0].GetAgentIds(), []string{"web-02"}) || r.GetImage() != oldImage {
		t.Fatalf("planned %v on %s, want web-02 alone on %s", r.GetBatches(), r.GetImage(), oldImage)
	}
	if !strings.Contains(r.GetReason(), "working set 95.0 MiB") {
		t.Errorf("reason %q lacks the evidence", r.GetReason())
	}
	for _, a := range c.agents {
		restarts, _ := a.snapshot()
		want := []string(nil)
		if a.id == "web-02" {
			want = []string{"in place " + oldImage}
		}
		if !slices.Equal(restarts, want) {
			t.Errorf("%s restarts %v, want %v", a.id, restarts, want)
		}
	}
	if got := c.byID["web-02"].executedIDs(t); !slices.Equal(got, []string{"ro-rem-1.web-02.restart"}) {
		t.Errorf("web-02 executed %v, want the restart alone (no pull)", got)
	}
	_, lbLog := c.lb.snapshot()
	checkLBLog(t, lbLog, [][]int{{1}})
	if steps := hostSteps(c.history("ro-rem-1"))["web-02"]; !slices.Equal(steps, fullPass) {
		t.Errorf("web-02 went through %v, want %v", steps, fullPass)
	}
	svc, err := c.engine().GetService(operator(), serviceName)
	if err != nil || svc.GetCurrentImage() != "" {
		t.Errorf("the service's current image is %q (%v): an automatic restart is no revision", svc.GetCurrentImage(), err)
	}
	// While an operator's rollout runs, an automatic restart is refused.
	for _, a := range c.agents {
		a.set(func(a *fakeAgent) { a.delay = 200 * time.Millisecond })
	}
	started := c.startRollout(newImage, strategy(1))
	err = c.engine().StartRemediation(operator(), "ro-rem-2", serviceName, []string{"web-01"}, "growth", []string{"web-01: grew"})
	if err == nil || !strings.Contains(err.Error(), "already has an active rollout: "+started.GetId()) {
		t.Errorf("StartRemediation during a rollout = %v, want refused naming %s", err, started.GetId())
	}
	c.waitState(started.GetId(), stateSucceeded, stateFailed, stateRolledBack)
}
