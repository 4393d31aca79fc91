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

// batchSize is the service's default batch size after the canary.
const batchSize = 2

// TestFleetRollout rolls releases out over the fleet of containers,
// behind Nginx, with the real grpcurl: v1 → v2 under load; v2 → v1 with
// the control plane killed mid-rollout; then a broken release that the
// canary catches. Each scenario starts from the state the previous one
// left; the first and the last are the ones package e2e runs on local
// processes.
func TestFleetRollout(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end fleet on Docker; run without -short")
	}
	begin := time.Now()
	f := startRolloutFleet(t)
	t.Logf("fleet with registry, Nginx and load balancer ready in %s", time.Since(begin).Round(100*time.Millisecond))
	f.putService(t)
	for _, s := range []struct {
		name string
		run  func(*testing.T)
	}{
		{"v1 to v2 in batches under load", func(t *testing.T) { rollouttest.ToV2(t, f, batchSize) }},
		{"control plane killed mid-rollout", f.testControlPlaneKilled},
		{"bad image rolled back by the canary", func(t *testing.T) { rollouttest.UnhealthyCanary(t, f, "v1", batchSize) }},
	} {
		if !t.Run(s.name, s.run) {
			return
		}
	}
}

// putService defines the service: the hosts' "web" containers behind the
// load balancer's upstream, in batches of two after a canary of one.
func (f *rolloutFleet) putService(t *testing.T) {
	t.Helper()
	body := fmt.Sprintf(`{"service": {"name": %q, "container": "web", "selector": "env=e2e,role=web", "health_url": "http://<app>:%[2]d/health",
  "load_balancer": {"selector": "role=lb", "upstream": %[3]q, "server_port": %[2]d, "address_label": "address"},
  "default_strategy": {"batch_size": %[4]d, "canary": 1, "min_healthy_time": "2s", "healthy_deadline": "30s", "auto_rollback": true}}}`,
		rollouttest.Service, appPort, rollouttest.Upstream, batchSize)
	var resp struct {
		Service struct {
			Name string `json:"name"`
		} `json:"service"`
	}
	f.g.RPC(t, grpcurl.RolloutService+"PutService", body, &resp)
	if resp.Service.Name != rollouttest.Service {
		t.Fatalf("PutService answered %+v", resp)
	}
}

// testControlPlaneKilled rolls back to v1 by hand and SIGKILLs the control
// plane once the second batch has started, then starts it again on its
// volume: the rollout must resume from its store and finish, with every
// application container re-created exactly once.
func (f *rolloutFleet) testControlPlaneKilled(t *testing.T) {
	run := rollouttest.Start(t, f, fmt.Sprintf(`{"service": %q, "image": %q, "reason": "back to v1"}`,
		rollouttest.Service, f.images["v1"]), rollouttest.LoadWorkers)
	fixture.Eventually(t, rollouttest.Timeout, "WatchRollout to show the second batch started", func() error {
		run.WatchAlive(t, "the second batch")
		if run.BatchStarted(1) {
			return nil
		}
		return errors.New("not yet")
	})
	f.e.kill(t, f.cpID)
	killed := time.Now()
	t.Logf("control plane SIGKILLed %s after StartRollout, the second batch under way", killed.Sub(run.Began).Round(100*time.Millisecond))
	<-run.Watch.Done() // the stream died with the server

	f.e.start(t, f.cpID)
	// The gRPC port is fixed; the metrics port is published anew.
	if addr := f.e.hostPort(t, f.cpID, "7443/tcp"); addr != f.g.Addr {
		t.Fatalf("the restarted control plane listens on %s, was %s", addr, f.g.Addr)
	}
	f.metricsURL = "http://" + f.e.hostPort(t, f.cpID, "7090/tcp") + "/metrics"
	fixture.Eventually(t, 30*time.Second, "the restarted control plane to answer GetRollout", func() error {
		_, err := f.g.GetRollout(run.ID)
		return err
	})
	t.Logf("control plane answering again %s after the kill", time.Since(killed).Round(100*time.Millisecond))
	// An engineer watches again; the stream replays the rollout's events,
	// the ones after the kill included.
	run.Watch = f.g.WatchRollout(t, run.ID, rollouttest.Timeout)
	res := run.FinishRecorded(t)
	for _, e := range res.Events {
		if e.Event.Host != nil && e.Event.At.After(killed) {
			t.Logf("the rollout resumed %s after the kill (first host step after it: %s)",
				e.Event.At.Sub(killed).Round(100*time.Millisecond), e.Event.Host.Step)
			break
		}
	}
	t.Logf("rollout finished %s after the kill; the load saw %d failures of %d requests over the whole rollout (not asserted)",
		time.Since(killed).Round(100*time.Millisecond), len(res.Load.Failures), res.Load.Requests)
	if res.Final.State != "ROLLOUT_STATE_SUCCEEDED" {
		t.Fatalf("rollout to v1 ended %s after the control plane's restart: %s", res.Final.State, res.Final.Message)
	}
	rollouttest.CheckAllRun(t, f, "v1")
	rollouttest.CheckCreatedOnce(t, f, res, f.images["v1"])
}
