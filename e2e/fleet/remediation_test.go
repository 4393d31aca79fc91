package fleet

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"flotilla.dev/e2e/internal/fixture"
	"flotilla.dev/e2e/internal/grpcurl"
	"flotilla.dev/e2e/internal/rollouttest"
)

// The leak of the remediation scenario: host-1's application leaks
// leakRate MiB a second up to leakMax MiB in a container limited to
// leakLimit, and the policy restarts it above thresholdPercent of the
// limit held for sustainedFor. The leak stops below the limit, so the
// container stays above the threshold without the kernel's OOM kill; the
// Go runtime's own garbage is held down by leakGoMemLimit (without it a
// loaded application's heap grew to the limit and the kernel killed the
// second run before the guard could escalate).
const (
	leakRate         = 4
	leakMax          = 36
	leakGoMemLimit   = "48MiB"
	leakLimit        = 64 << 20
	thresholdPercent = 50
	sustainedFor     = 10 * time.Second
)

// remediationEvent is flotilla.v1.RemediationEvent as grpcurl prints it.
type remediationEvent struct {
	ID         string    `json:"id"`
	Service    string    `json:"service"`
	AgentID    string    `json:"agentId"`
	Action     string    `json:"action"`
	Reason     string    `json:"reason"`
	Evidence   string    `json:"evidence"`
	RolloutID  string    `json:"rolloutId"`
	OccurredAt time.Time `json:"occurredAt"`
}

// TestFleetRemediation runs the memory-leak scenario of issue 16 on the
// containerized fleet behind Nginx under load: a service's policy
// restarts host-1's leaking container automatically, drained from Nginx
// like a rollout step, with no failed request; the leak comes back, and
// the guard (one restart per host per hour) refuses a second restart and
// escalates instead.
func TestFleetRemediation(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end fleet on Docker; run without -short")
	}
	f := startRolloutFleetWith(t, func(i int, s *containerSpec) {
		if i == 1 {
			s.env = []string{fmt.Sprintf("LEAK_MB_PER_S=%d", leakRate), fmt.Sprintf("LEAK_MAX_MB=%d", leakMax), "GOMEMLIMIT=" + leakGoMemLimit}
			s.memory = leakLimit
		}
	})
	leaky := rollouttest.HostOf(t, f, f.agentIDs["host-1"])
	checkLimitReported(t, f, leaky)

	run := rollouttest.Observe(t, f, rollouttest.LoadWorkers)
	f.putLeakPolicy(t)
	policySet := time.Now()
	restart := f.waitRemediation(t, "REMEDIATION_ACTION_RESTART", leaky.AgentID, rollouttest.Timeout)
	t.Logf("automatic restart %s %s after the policy was set on a container already above its threshold (sustained_for %s): %s",
		restart.RolloutID, restart.OccurredAt.Sub(policySet).Round(100*time.Millisecond), sustainedFor, restart.Evidence)
	run.Follow(t, restart.RolloutID)
	res := run.Finish(t)
	checkRestartRollout(t, res, leaky)
	rollouttest.CheckNoFailures(t, "the automatic restart", res.Load)
	if got := res.Creates[leaky.Container]; len(got) != 0 {
		t.Errorf("the automatic restart re-created %s (%v); it restarts the container in place", leaky.Container, got)
	}

	// The leak comes back in the new run; the guard stops the next
	// restart and escalates, and no rollout starts.
	load := fixture.StartLoad(t, f.nginx.URL(rollouttest.Upstream), rollouttest.LoadWorkers, rollouttest.Timeout)
	crossed := f.waitAboveThreshold(t, leaky)
	esc := f.waitRemediation(t, "REMEDIATION_ACTION_ESCALATION", leaky.AgentID, rollouttest.Timeout)
	t.Logf("the new run crossed %d%% of its limit at %s; escalated %s later: %s (%s)", thresholdPercent,
		crossed.Format(time.RFC3339Nano), esc.OccurredAt.Sub(crossed).Round(100*time.Millisecond), esc.Reason, esc.Evidence)
	second := load.Stop()
	rollouttest.CheckNoFailures(t, "the escalation", second)
	f.checkOneRestart(t, restart.RolloutID)
	fixture.Eventually(t, 30*time.Second, "the remediation counters on /metrics", func() error {
		return f.metricsShow(`flotilla_remediation_restarts_total{reason="threshold",service="web"} 1`,
			`flotilla_remediation_escalations_total{service="web"} 1`,
			`flotilla_remediation_guard_blocked_total{guard="restarts_per_hour",service="web"} 1`)
	})
	// What an operator sees.
	if _, err := f.g.Invoke(t, grpcurl.RolloutService+"ListRemediations", fmt.Sprintf(`{"service": %q}`, rollouttest.Service)); err != nil {
		t.Errorf("ListRemediations: %v", err)
	}
	t.Logf("remediation under load through nginx: %d requests sent, %d failed (%d during the restart, %d while the guard held)",
		res.Load.Requests+second.Requests, len(res.Load.Failures)+len(second.Failures), res.Load.Requests, second.Requests)
}

// checkLimitReported waits until the leaky container's reading shows its
// memory limit: an engine that cannot enforce one cannot run the test.
func checkLimitReported(t *testing.T, f *rolloutFleet, h rollouttest.Host) {
	t.Helper()
	fixture.Eventually(t, 30*time.Second, "the leaky container's memory limit in its agent's heartbeat", func() error {
		a, err := f.g.GetAgent(h.AgentID)
		if err != nil {
			return err
		}
		for _, c := range a.Containers {
			if got := c.Resources.MemoryLimitBytes; got == leakLimit {
				return nil
			} else if got != 0 {
				return fmt.Errorf("limit %d reported, want %d: the engine does not enforce the container's memory limit", got, leakLimit)
			}
		}
		return errors.New("no reading yet")
	})
}

// putLeakPolicy gives the service a remediation policy: above 50 % of the
// limit for 10 s, at most one restart per host per hour.
func (f *rolloutFleet) putLeakPolicy(t *testing.T) {
	t.Helper()
	body := fmt.Sprintf(`{"service": {"name": %q, "container": "web", "selector": "env=e2e,role=web", "health_url": "http://<app>:%[2]d/health",
  "load_balancer": {"selector": "role=lb", "upstream": %[3]q, "server_port": %[2]d, "address_label": "address"},
  "default_strategy": {"max_unavailable": 1, "min_healthy_time": "2s", "healthy_deadline": "30s"},
  "remediation": {"memory_percent_of_limit": %[4]d, "sustained_for": %[5]q, "max_restarts_per_host_per_hour": 1}}}`,
		rollouttest.Service, appPort, rollouttest.Upstream, thresholdPercent, sustainedFor.String())
	out, err := f.g.Invoke(t, grpcurl.RolloutService+"PutService", body)
	if err != nil {
		t.Fatalf("PutService with a remediation policy: %v\n%s", err, out)
	}
	t.Logf("PutService with a remediation policy answered:\n%s", out)
}

// waitRemediation waits for ListRemediations to show an event of action
// on the agent, and returns it.
func (f *rolloutFleet) waitRemediation(t *testing.T, action, agentID string, timeout time.Duration) remediationEvent {
	t.Helper()
	var found remediationEvent
	fixture.Eventually(t, timeout, "ListRemediations to show "+action+" on "+agentID, func() error {
		var resp struct {
			Events []remediationEvent `json:"events"`
		}
		if err := f.g.Call(grpcurl.RolloutService+"ListRemediations", map[string]any{"service": rollouttest.Service}, &resp); err != nil {
			return err
		}
		for _, ev := range resp.Events {
			if ev.Action == action && ev.AgentID == agentID {
				found = ev
				return nil
			}
		}
		return fmt.Errorf("%d events, none %s", len(resp.Events), action)
	})
	return found
}

// checkRestartRollout checks the automatic restart's rollout: by the
// remediation actor, only the leaky host, drained from Nginx, succeeded.
func checkRestartRollout(t *testing.T, res rollouttest.Result, h rollouttest.Host) {
	t.Helper()
	final := res.Final
	if final.State != "ROLLOUT_STATE_SUCCEEDED" || final.CreatedBy != "system:remediation" {
		t.Fatalf("automatic restart %s ended %s (created by %q): %s", final.ID, final.State, final.CreatedBy, final.Message)
	}
	if len(final.Batches) != 1 || len(final.Batches[0].AgentIDs) != 1 || final.Batches[0].AgentIDs[0] != h.AgentID {
		t.Errorf("automatic restart planned %+v, want only %s", final.Batches, h.AgentID)
	}
	if !res.Drained[h.Server] || res.MaxDown != 1 {
		t.Errorf("the upstream showed %v drained (at most %d at once), want %s alone", res.Drained, res.MaxDown, h.Server)
	}
	steps := rollouttest.HostSteps(res.Events, h.AgentID, false)
	t.Logf("the leaky host's steps: %v", steps)
}

// waitAboveThreshold waits until the leaky container's new run reports a
// working set above the threshold and returns when it was seen.
func (f *rolloutFleet) waitAboveThreshold(t *testing.T, h rollouttest.Host) time.Time {
	t.Helper()
	var at time.Time
	fixture.Eventually(t, rollouttest.Timeout, "the new run's working set above the threshold", func() error {
		a, err := f.g.GetAgent(h.AgentID)
		if err != nil {
			return err
		}
		for _, c := range a.Containers {
			if ws := c.Resources.MemoryWorkingSetBytes; ws*100 > uint64(leakLimit*thresholdPercent) {
				at = time.Now()
				return nil
			} else if ws > 0 {
				return fmt.Errorf("working set %.1f MiB", float64(ws)/(1<<20))
			}
		}
		return errors.New("no reading")
	})
	return at
}

// checkOneRestart checks that the escalation started no second restart:
// the one automatic restart is the service's only rollout.
func (f *rolloutFleet) checkOneRestart(t *testing.T, rolloutID string) {
	t.Helper()
	var resp struct {
		Rollouts []grpcurl.Rollout `json:"rollouts"`
	}
	if err := f.g.Call(grpcurl.RolloutService+"ListRollouts", map[string]any{"service": rollouttest.Service}, &resp); err != nil {
		t.Fatal(err)
	}
	if len(resp.Rollouts) != 1 || resp.Rollouts[0].ID != rolloutID {
		t.Errorf("the service has %d rollouts (%+v), want only the automatic restart %s", len(resp.Rollouts), resp.Rollouts, rolloutID)
	}
}
