package e2e

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"flotilla.dev/e2e/internal/fixture"
	"flotilla.dev/e2e/internal/grpcurl"
	"flotilla.dev/e2e/internal/rollouttest"
)

// TestBlueGreenEndToEnd rolls v2 out blue-green over the three hosts
// behind Nginx under load, switches back with RollbackService, rolls v2
// out again and lets the previous containers go, then measures today's
// rolling rollback on the same fleet for comparison. Every phase must
// lose no request. The figures (switch, switch back, rolling rollback,
// requests) are logged, not asserted.
func TestBlueGreenEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test; run without -short")
	}
	env := newRolloutEnv(t)
	bg := &blueGreenRun{env: env, alt: fixture.FreePort(t)}
	bg.putService(t)
	for _, s := range []struct {
		name string
		run  func(*testing.T)
	}{
		{"blue-green v1 to v2 and switch back under load", bg.testSwitchAndBack},
		{"blue-green v1 to v2, previous containers removed", bg.testSwitchAndRetire},
		{"rolling rollback v2 to v1 for comparison", bg.testRollingRollback},
	} {
		if !t.Run(s.name, s.run) {
			return
		}
	}
}

type blueGreenRun struct {
	env *rolloutEnv
	alt int // the load balancer's alternate port
}

func (bg *blueGreenRun) putService(t *testing.T) {
	env := bg.env
	body := fmt.Sprintf(`{"service": {"name": %q, "container": %q, "selector": "env=e2e,role=web",
  "load_balancer": {"selector": "role=lb", "upstream": %q, "server_port": %d, "alternate_port": %d, "address_label": "address"},
  "default_strategy": {"min_healthy_time": "2s", "healthy_deadline": "30s", "blue_green": {"keep_previous": "10m"}}}}`,
		rollouttest.Service, rolloutContainer, rollouttest.Upstream, env.port, bg.alt)
	var resp struct {
		Service grpcurl.Service `json:"service"`
	}
	env.g.RPC(t, grpcurl.RolloutService+"PutService", body, &resp)
	if resp.Service.Name != rollouttest.Service {
		t.Fatalf("PutService answered %s", grpcurl.Dump(resp))
	}
}

// upstreamOn reports whether the upstream file lists every host on port
// and no host on another port.
func (bg *blueGreenRun) upstreamOn(port int) bool {
	b, err := os.ReadFile(bg.env.nginx.UpstreamFile(rollouttest.Upstream))
	if err != nil {
		return false
	}
	for _, h := range bg.env.hosts {
		if !strings.Contains(string(b), h.server(port)+";") && !strings.Contains(string(b), h.server(port)+" ") {
			return false
		}
	}
	return true
}

// waitUpstream polls the upstream file every 5ms until it lists every
// host on port and returns when it saw that.
func (bg *blueGreenRun) waitUpstream(t *testing.T, port int) time.Time {
	t.Helper()
	deadline := time.Now().Add(rollouttest.Timeout)
	for !bg.upstreamOn(port) {
		if time.Now().After(deadline) {
			t.Fatalf("the upstream file never listed every host on port %d:\n%s", port, bg.env.nginx.ReadUpstreamFile(t, rollouttest.Upstream))
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Now()
}

// liveIDs are the IDs of the hosts' live application containers.
func (bg *blueGreenRun) liveIDs(t *testing.T) []string {
	var ids []string
	for _, h := range bg.env.hosts {
		ids = append(ids, bg.env.docker.Inspect(t, h.container).ID)
	}
	return ids
}

// eventAt is when the events first show a host reach step (or, with step
// "", the rollout reach state), rolling back or not.
func eventAt(events []grpcurl.RolloutEvent, step, state string) time.Time {
	for _, e := range events {
		if h := e.Event.Host; h != nil && step != "" && h.Step == step {
			return e.Event.At
		}
		if s := e.Event.State; s != nil && state != "" && s.State == state {
			return e.Event.At
		}
	}
	return time.Time{}
}

func (bg *blueGreenRun) testSwitchAndBack(t *testing.T) {
	env := bg.env
	before := bg.liveIDs(t)
	run := rollouttest.Start(t, env, fmt.Sprintf(`{"service": %q, "image": %q, "reason": "blue-green"}`, rollouttest.Service, env.images["v2"]),
		rollouttest.LoadWorkers)
	switched := bg.waitUpstream(t, bg.alt)
	fixture.Eventually(t, rollouttest.Timeout, "the rollout to be SWITCHED", func() error {
		r, err := env.g.GetRollout(run.ID)
		if err == nil && r.State != "ROLLOUT_STATE_SWITCHED" {
			err = fmt.Errorf("%s: %s", r.State, r.Message)
		}
		return err
	})
	events := run.Watch.RolloutEvents()
	start, done := eventAt(events, "HOST_STEP_SWITCHING", ""), eventAt(events, "", "ROLLOUT_STATE_SWITCHED")
	for _, h := range env.hosts {
		waitBody(t, h.url(bg.alt), "v2")
		waitBody(t, h.url(env.port), "v1") // the previous container still runs
	}
	// Some traffic on v2 before the switch back.
	time.Sleep(2 * time.Second)
	callAt := time.Now()
	var back grpcurl.RolloutResponse
	env.g.RPC(t, grpcurl.RolloutService+"RollbackService", fmt.Sprintf(`{"service": %q, "reason": "error rate"}`, rollouttest.Service), &back)
	if back.Rollout.ID != run.ID {
		t.Fatalf("RollbackService answered rollout %s, want the switched %s", back.Rollout.ID, run.ID)
	}
	backAt := bg.waitUpstream(t, env.port)
	res := run.Finish(t)
	if res.Final.State != "ROLLOUT_STATE_ROLLED_BACK" {
		t.Fatalf("the switched rollout ended %s: %s", res.Final.State, res.Final.Message)
	}
	rolledBack := eventAt(res.Events, "", "ROLLOUT_STATE_ROLLED_BACK")
	t.Logf("FIGURES blue-green: load balancer switched %s after the switch began (upstream file seen changed after %s); "+
		"rollout SWITCHED %s after StartRollout", done.Sub(start).Round(time.Millisecond), switched.Sub(start).Round(time.Millisecond),
		done.Sub(run.Began).Round(100*time.Millisecond))
	t.Logf("FIGURES switch back: upstream file back %s after RollbackService; ROLLED_BACK (previous containers renamed back, new ones removed) after %s",
		backAt.Sub(callAt).Round(time.Millisecond), rolledBack.Sub(callAt).Round(time.Millisecond))
	t.Logf("FIGURES load over the switch and the switch back: %d requests, %d failed, answers %v", res.Load.Requests, len(res.Load.Failures), res.Load.ByBody)
	rollouttest.CheckNoFailures(t, "a blue-green switch and switch back", res.Load)
	if res.Load.ByBody["v2"] == 0 || res.Load.ByBody["v1"] == 0 {
		t.Errorf("answers %v: want both v1 and v2", res.Load.ByBody)
	}
	if after := bg.liveIDs(t); strings.Join(after, ",") != strings.Join(before, ",") {
		t.Errorf("live containers %v after the switch back, want the very same %v: nothing re-created", after, before)
	}
	bg.checkNoCompanions(t)
	rollouttest.CheckAllRun(t, env, "v1")
	// The agents sent a heartbeat before each final event of the switch
	// back: the next plan, made now, reads the containers as they are.
	if err := bg.reports("v1", env.port); err != nil {
		t.Fatalf("right after the switch back: %v", err)
	}
}

// reports checks that every host reports its container on version and
// port: the next plan reads them.
func (bg *blueGreenRun) reports(version string, port int) error {
	env := bg.env
	for _, h := range env.hosts {
		a, err := env.g.GetAgent(h.agentID)
		if err != nil {
			return err
		}
		if c := a.LastHeartbeat.Containers; len(c) == 0 || c[0].Image != env.images[version] || !containsPort(c[0].HostPorts, port) {
			return fmt.Errorf("%s reports %+v, want %s on port %d", h.name, c, version, port)
		}
	}
	return nil
}

// waitReports waits until every host reports its container on version
// and port (see reports).
func (bg *blueGreenRun) waitReports(t *testing.T, version string, port int) {
	t.Helper()
	fixture.Eventually(t, 30*time.Second, fmt.Sprintf("the hosts to report %s on port %d", version, port),
		func() error { return bg.reports(version, port) })
}

// checkNoCompanions checks that no candidate or previous container is left.
func (bg *blueGreenRun) checkNoCompanions(t *testing.T) {
	t.Helper()
	for _, h := range bg.env.hosts {
		for _, s := range []string{".flotilla-next", ".flotilla-previous"} {
			if bg.env.docker.Exists(t, h.container+s) {
				t.Errorf("container %s%s is left", h.container, s)
			}
		}
	}
}

func (bg *blueGreenRun) testSwitchAndRetire(t *testing.T) {
	env := bg.env
	run := rollouttest.Start(t, env, fmt.Sprintf(`{"service": %q, "image": %q, "reason": "blue-green, keep nothing",
  "strategy": {"min_healthy_time": "2s", "healthy_deadline": "30s", "blue_green": {"keep_previous": "3s"}}}`, rollouttest.Service, env.images["v2"]),
		rollouttest.LoadWorkers)
	res := run.Finish(t)
	if res.Final.State != "ROLLOUT_STATE_SUCCEEDED" {
		t.Fatalf("rollout ended %s: %s", res.Final.State, res.Final.Message)
	}
	t.Logf("FIGURES blue-green with removal: %d requests, %d failed", res.Load.Requests, len(res.Load.Failures))
	rollouttest.CheckNoFailures(t, "a blue-green rollout and the removal of the previous containers", res.Load)
	if !bg.upstreamOn(bg.alt) {
		t.Fatalf("the upstream does not list the hosts on %d:\n%s", bg.alt, env.nginx.ReadUpstreamFile(t, rollouttest.Upstream))
	}
	for _, h := range env.hosts {
		waitBody(t, h.url(bg.alt), "v2")
	}
	bg.checkNoCompanions(t)
	bg.waitReports(t, "v2", bg.alt)
}

func containsPort(ports []int, p int) bool {
	for _, x := range ports {
		if x == p {
			return true
		}
	}
	return false
}

// testRollingRollback goes back to v1 the way a rollback works without
// blue-green: a rolling rollout, one host at a time behind drains. The
// hosts serve on the alternate port now, which the plan reads from them.
func (bg *blueGreenRun) testRollingRollback(t *testing.T) {
	env := bg.env
	run := rollouttest.Start(t, env, fmt.Sprintf(`{"service": %q, "image": %q, "reason": "rolling rollback",
  "strategy": {"batch_size": 1, "min_healthy_time": "2s", "healthy_deadline": "30s"}}`, rollouttest.Service, env.images["v1"]),
		rollouttest.LoadWorkers)
	res := run.Finish(t)
	if res.Final.State != "ROLLOUT_STATE_SUCCEEDED" {
		t.Fatalf("rolling rollback ended %s: %s", res.Final.State, res.Final.Message)
	}
	t.Logf("FIGURES rolling rollback (3 hosts one at a time, 2s health gate): %s from StartRollout to SUCCEEDED; %d requests, %d failed",
		res.Final.FinishedAt.Sub(run.Began).Round(100*time.Millisecond), res.Load.Requests, len(res.Load.Failures))
	rollouttest.CheckNoFailures(t, "a rolling rollback", res.Load)
	for _, h := range env.hosts {
		waitBody(t, h.url(bg.alt), "v1")
	}
	if !bg.upstreamOn(bg.alt) {
		t.Fatalf("the upstream does not list the hosts on %d:\n%s", bg.alt, env.nginx.ReadUpstreamFile(t, rollouttest.Upstream))
	}
}
