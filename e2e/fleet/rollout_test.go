package fleet

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"flotilla.dev/e2e/internal/fixture"
)

// rolloutTimeout bounds one rollout from StartRollout to its end. It is a
// ceiling for a stuck rollout, not an expectation: a rollout here takes
// 15–60 s, but CI runs this package next to others on two cores, and one
// run saw a canary's restart take 19 s and a fault rollout still rolling
// back at 90 s.
const rolloutTimeout = 4 * time.Minute

// loadWorkers is how many clients send requests through Nginx during a
// rollout.
const loadWorkers = 4

// TestFleetRollout rolls releases out over the fleet of containers,
// behind Nginx, with the real grpcurl: v1 → v2 under load; v2 → v1 with
// the control plane killed mid-rollout; then a broken release that the
// canary catches. Each scenario starts from the state the previous one
// left.
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
		{"v1 to v2 in batches under load", f.testRolloutV2},
		{"control plane killed mid-rollout", f.testControlPlaneKilled},
		{"bad image rolled back by the canary", f.testBadImage},
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
  "default_strategy": {"batch_size": 2, "canary": 1, "min_healthy_time": "2s", "healthy_deadline": "30s", "auto_rollback": true}}}`,
		serviceName, appPort, upstream)
	var resp struct {
		Service struct {
			Name string `json:"name"`
		} `json:"service"`
	}
	f.g.rollout(t, "PutService", body, &resp)
	if resp.Service.Name != serviceName {
		t.Fatalf("PutService answered %+v", resp)
	}
}

// started is a rollout under way, with the load through Nginx and the
// WatchRollout stream that follow it.
type started struct {
	id    string
	began time.Time
	load  *fixture.Load
	watch *watchStream
	// creates records the application containers created from the start
	// on (nil when the caller records them itself).
	creates *createRecorder
}

// start starts the load loop and a rollout, and watches it.
func (f *rolloutFleet) start(t *testing.T, body string) started {
	t.Helper()
	s := started{began: time.Now(), creates: f.recordCreates(t), load: fixture.StartLoad(t, f.nginx.URL(upstream), loadWorkers, rolloutTimeout)}
	var resp struct {
		Rollout rolloutJSON `json:"rollout"`
	}
	f.g.rollout(t, "StartRollout", body, &resp)
	if resp.Rollout.ID == "" {
		t.Fatalf("StartRollout answered %+v", resp)
	}
	s.id = resp.Rollout.ID
	s.watch = f.g.watchRollout(t, s.id, rolloutTimeout)
	return s
}

// finish waits until the rollout has ended, by GetRollout, stops the load
// and logs the figures.
func (f *rolloutFleet) finish(t *testing.T, s started) (rolloutJSON, fixture.LoadReport) {
	t.Helper()
	var final rolloutJSON
	eventually(t, rolloutTimeout, "rollout "+s.id+" to end", func() error {
		var err error
		if final, err = f.g.getRollout(s.id); err == nil && !terminal(final.State) {
			err = fmt.Errorf("state %s", final.State)
		}
		return err
	})
	report := s.load.Stop()
	t.Logf("rollout %s to %s: %s in %s (%s); load through Nginx: %d requests, %d failed, answers %v",
		final.ID, final.Image, final.State, time.Since(s.began).Round(100*time.Millisecond), final.Message,
		report.Requests, len(report.Failures), report.ByBody)
	return final, report
}

// testRolloutV2 rolls v2 out while clients send requests through Nginx.
func (f *rolloutFleet) testRolloutV2(t *testing.T) {
	s := f.start(t, fmt.Sprintf(`{"service": %q, "image": %q, "reason": "release v2"}`, serviceName, f.images["v2"]))
	events := s.watch.wait(t)
	final, load := f.finish(t, s)
	t.Logf("WatchRollout printed %d events", len(events))
	if final.State != "ROLLOUT_STATE_SUCCEEDED" {
		t.Fatalf("rollout to v2 ended %s: %s", final.State, final.Message)
	}
	if len(final.Batches) != 3 || len(final.Batches[0].AgentIDs) != 1 || !final.Batches[0].Canary {
		t.Errorf("batches %+v, want a canary of one, then batches of two", final.Batches)
	}
	checkNoFailures(t, load)
	if load.ByBody["v1"] == 0 || load.ByBody["v2"] == 0 || len(load.ByBody) != 2 {
		t.Errorf("answers %v: want v1, then v2, nothing else", load.ByBody)
	}
	f.checkAllRun(t, f.images["v2"])
	f.checkCreatedOnce(t, s.creates, f.images["v2"])
}

// testControlPlaneKilled rolls back to v1 by hand and SIGKILLs the control
// plane once the second batch has started, then starts it again on its
// volume: the rollout must resume from its store and finish, with every
// application container re-created exactly once.
func (f *rolloutFleet) testControlPlaneKilled(t *testing.T) {
	s := f.start(t, fmt.Sprintf(`{"service": %q, "image": %q, "reason": "back to v1"}`, serviceName, f.images["v1"]))
	eventually(t, rolloutTimeout, "WatchRollout to show the second batch started", func() error {
		if s.watch.batchStarted(1) {
			return nil
		}
		select {
		case <-s.watch.done:
			t.Fatalf("WatchRollout ended before the second batch: %v\n%s", s.watch.err, s.watch.out.String())
		default:
		}
		return fmt.Errorf("not yet")
	})
	f.e.kill(t, f.cpID)
	killed := time.Now()
	t.Logf("control plane SIGKILLed %s after StartRollout, the second batch under way", killed.Sub(s.began).Round(100*time.Millisecond))
	<-s.watch.done // the stream died with the server

	f.e.start(t, f.cpID)
	// The gRPC port is fixed; the metrics port is published anew.
	if addr := f.e.hostPort(t, f.cpID, "7443/tcp"); addr != f.g.addr {
		t.Fatalf("the restarted control plane listens on %s, was %s", addr, f.g.addr)
	}
	f.metricsURL = "http://" + f.e.hostPort(t, f.cpID, "7090/tcp") + "/metrics"
	eventually(t, 30*time.Second, "the restarted control plane to answer GetRollout", func() error {
		_, err := f.g.getRollout(s.id)
		return err
	})
	t.Logf("control plane answering again %s after the kill", time.Since(killed).Round(100*time.Millisecond))
	// An engineer watches again; the stream replays the rollout's events,
	// the ones after the kill included.
	s.watch = f.g.watchRollout(t, s.id, rolloutTimeout)
	events := s.watch.wait(t)
	final, load := f.finish(t, s)
	for _, e := range events {
		if e.Event.Host != nil && e.Event.At.After(killed) {
			t.Logf("the rollout resumed %s after the kill (first host step after it: %s)",
				e.Event.At.Sub(killed).Round(100*time.Millisecond), e.Event.Host.Step)
			break
		}
	}
	t.Logf("rollout finished %s after the kill; the load saw %d failures of %d requests over the whole rollout (not asserted)",
		time.Since(killed).Round(100*time.Millisecond), len(load.Failures), load.Requests)
	if final.State != "ROLLOUT_STATE_SUCCEEDED" {
		t.Fatalf("rollout to v1 ended %s after the control plane's restart: %s", final.State, final.Message)
	}
	f.checkAllRun(t, f.images["v1"])
	f.checkCreatedOnce(t, s.creates, f.images["v1"])
}

// testBadImage rolls out the release whose /health answers 503: the
// canary fails its health gate and is rolled back; no other host is
// touched and no request fails.
func (f *rolloutFleet) testBadImage(t *testing.T) {
	bad := f.images[fixture.VersionUnhealthy]
	s := f.start(t, fmt.Sprintf(`{"service": %q, "image": %q, "reason": "release v3",
  "strategy": {"batch_size": 2, "canary": 1, "min_healthy_time": "2s", "healthy_deadline": "10s", "auto_rollback": true}}`,
		serviceName, bad))
	events := s.watch.wait(t)
	final, load := f.finish(t, s)
	t.Logf("WatchRollout printed %d events", len(events))
	if final.State != "ROLLOUT_STATE_ROLLED_BACK" {
		t.Fatalf("rollout to the broken release ended %s: %s", final.State, final.Message)
	}
	checkNoFailures(t, load)
	if load.ByBody[fixture.VersionUnhealthy] > 0 {
		t.Errorf("answers %v: the broken release served traffic", load.ByBody)
	}
	canary := f.hostOf(t, final.Batches[0].AgentIDs[0])
	creates := s.creates.stop(t)
	badCreates := 0
	for _, h := range f.hosts {
		images := creates[h.app]
		badCreates += count(images, bad)
		if h.name != canary.name && len(images) > 0 {
			t.Errorf("%s beyond the canary was re-created: %v", h.name, images)
		}
		t.Logf("  %s: created %v", h.name, images)
	}
	if badCreates != 1 || count(creates[canary.app], bad) != 1 {
		t.Errorf("%d containers created from the broken release, want exactly one, the canary %s's", badCreates, canary.name)
	}
	f.checkAllRun(t, f.images["v1"])
}

// checkNoFailures wants requests and no failure among them.
func checkNoFailures(t *testing.T, r fixture.LoadReport) {
	t.Helper()
	if len(r.Failures) > 0 || r.Requests == 0 {
		t.Errorf("load: %d requests, %d failed: %v", r.Requests, len(r.Failures), r.Failures[:min(5, len(r.Failures))])
	}
}

// checkAllRun checks with Docker that every application container runs
// image.
func (f *rolloutFleet) checkAllRun(t *testing.T, image string) {
	t.Helper()
	for _, h := range f.hosts {
		c := f.e.Inspect(t, h.app)
		if c.Config.Image != image || c.State == nil || !c.State.Running {
			t.Errorf("%s's container runs %s (running %v), want %s", h.name, c.Config.Image, c.State != nil && c.State.Running, image)
		}
	}
}

// checkCreatedOnce checks with Docker's event stream that every
// application container was created exactly once since the recording
// began, from image.
func (f *rolloutFleet) checkCreatedOnce(t *testing.T, rec *createRecorder, image string) {
	t.Helper()
	creates := rec.stop(t)
	total := 0
	for _, h := range f.hosts {
		total += len(creates[h.app])
		if !slices.Equal(creates[h.app], []string{image}) {
			t.Errorf("%s's container was created %d times (%v), want once from %s", h.name, len(creates[h.app]), creates[h.app], image)
		}
	}
	t.Logf("Docker events: %d application containers created for this rollout", total)
}

// count counts s in list.
func count(list []string, s string) int {
	n := 0
	for _, x := range list {
		if x == s {
			n++
		}
	}
	return n
}
