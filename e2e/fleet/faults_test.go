package fleet

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"flotilla.dev/e2e/internal/fixture"
	"flotilla.dev/e2e/internal/grpcurl"
	"flotilla.dev/e2e/internal/rollouttest"
)

// faultLoadWorkers keeps the load light while a host is broken on
// purpose: the figures are logged, not asserted.
const faultLoadWorkers = 2

// detectionSlack is what the control plane may take beyond
// agent_lost_after to fail a host whose agent went silent: its tick, the
// last heartbeat's age, a loaded machine.
const detectionSlack = 10 * time.Second

// faultStrategy rolls out a canary, then batches of two, each host held in
// its health gate long enough for the test to break it there; one failed
// host stops the rollout, which puts the changed hosts back.
const faultStrategy = `{"batch_size": 2, "canary": 1, "min_healthy_time": "8s", "healthy_deadline": "40s",
  "max_failures": {"count": 1}, "auto_rollback": true}`

// TestFleetFaults breaks one host of the second batch while it is in its
// health gate: first by SIGKILLing its agent container, then by cutting
// it off the network for a while. Each time the host must fail within
// agent_lost_after, the rollout must roll back, the agent must come back
// under its own ID and the fleet must end consistent with the rollout's
// record, with no application container re-created more than once per
// step.
func TestFleetFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end fleet on Docker; run without -short")
	}
	begin := time.Now()
	f := startRolloutFleet(t)
	t.Logf("fleet ready in %s", time.Since(begin).Round(100*time.Millisecond))
	f.putService(t)
	for _, s := range []struct {
		name string
		run  func(*testing.T)
	}{
		{"agent killed mid-rollout", f.testAgentKilled},
		{"host partitioned mid-rollout", f.testPartition},
	} {
		if !t.Run(s.name, s.run) {
			return
		}
	}
}

// fault is a rollout with one host broken in its health gate.
type fault struct {
	*rollouttest.Run
	target host
	// targetID is the broken host's agent ID.
	targetID string
	// brokenAt is when the host was broken.
	brokenAt time.Time
}

// startFault rolls v2 out and, once a host of the second batch is in its
// health gate, calls breakHost on it.
func (f *rolloutFleet) startFault(t *testing.T, reason string, breakHost func(host)) fault {
	t.Helper()
	run := rollouttest.Start(t, f, fmt.Sprintf(`{"service": %q, "image": %q, "reason": %q, "strategy": %s}`,
		rollouttest.Service, f.images["v2"], reason, faultStrategy), faultLoadWorkers)
	var targetID string
	fixture.Eventually(t, rollouttest.Timeout, "a host of the second batch in its health gate", func() error {
		run.WatchAlive(t, "the second batch's health gate")
		if targetID == "" {
			r, err := f.g.GetRollout(run.ID)
			if err != nil {
				return err
			}
			if len(r.Batches) < 2 || len(r.Batches[1].AgentIDs) == 0 {
				return fmt.Errorf("batches %+v", r.Batches)
			}
			targetID = r.Batches[1].AgentIDs[0]
		}
		if _, _, ok := run.HostStepAt(targetID, "HOST_STEP_HEALTH_CHECK"); ok {
			return nil
		}
		return fmt.Errorf("not yet")
	})
	fl := fault{Run: run, target: f.hostOf(t, targetID), targetID: targetID}
	breakHost(fl.target)
	fl.brokenAt = time.Now()
	t.Logf("%s broken in its health gate %s after StartRollout", fl.target.name, fl.brokenAt.Sub(run.Began).Round(100*time.Millisecond))
	return fl
}

// waitFailed waits for the broken host to fail, checks it failed within
// agent_lost_after and slack because its agent stopped answering, and
// returns the detection time.
func (f *rolloutFleet) waitFailed(t *testing.T, fl fault) time.Duration {
	t.Helper()
	fl.WaitHostStep(t, agentLostAfter+detectionSlack+5*time.Second, fl.target.name+" to fail", fl.targetID, "HOST_STEP_FAILED")
	failedAt, msg, _ := fl.HostStepAt(fl.targetID, "HOST_STEP_FAILED")
	detect := failedAt.Sub(fl.brokenAt)
	t.Logf("%s failed %s after it was broken (agent_lost_after %s): %s", fl.target.name, detect.Round(100*time.Millisecond), agentLostAfter, msg)
	if detect > agentLostAfter+detectionSlack {
		t.Errorf("%s failed %s after it was broken, want within agent_lost_after %s + %s", fl.target.name, detect, agentLostAfter, detectionSlack)
	}
	if !strings.Contains(msg, "stopped answering") {
		t.Errorf("%s failed with %q, want it to say the agent stopped answering", fl.target.name, msg)
	}
	return detect
}

// finishFault waits for the rollout's end and checks it followed its
// policy: rolled back, or rollback failed on the broken host only.
func (f *rolloutFleet) finishFault(t *testing.T, fl fault) grpcurl.Rollout {
	t.Helper()
	res := fl.Finish(t)
	final := res.Final
	t.Logf("load (not asserted): %d requests, %d failed", res.Load.Requests, len(res.Load.Failures))
	for _, h := range final.Hosts {
		t.Logf("  %s: %s (%s)", f.hostOf(t, h.AgentID).name, h.Step, h.Message)
	}
	switch final.State {
	case "ROLLOUT_STATE_ROLLED_BACK", "ROLLOUT_STATE_ROLLBACK_FAILED":
	default:
		t.Fatalf("rollout ended %s (%s), want it rolled back after one failed host", final.State, final.Message)
	}
	for _, h := range final.Hosts {
		if h.AgentID != fl.targetID && h.Step == "HOST_STEP_ROLLBACK_FAILED" {
			t.Errorf("%s's rollback failed, yet only %s was broken", f.hostOf(t, h.AgentID).name, fl.target.name)
		}
	}
	return final
}

// waitBack waits for the broken host's agent to be connected again under
// its own ID and to report the container Docker shows.
func (f *rolloutFleet) waitBack(t *testing.T, fl fault, since time.Time) {
	t.Helper()
	fixture.Eventually(t, 90*time.Second, fl.target.name+" to reconnect with the same ID and report its container", func() error {
		a, err := f.g.GetAgent(fl.targetID)
		if err != nil {
			return err
		}
		if a.State != "AGENT_STATE_CONNECTED" || !a.ConnectedAt.After(fl.brokenAt) {
			return fmt.Errorf("state %s, connected at %v", a.State, a.ConnectedAt)
		}
		c := f.e.Inspect(t, fl.target.app)
		if len(a.Containers) != 1 || a.Containers[0].Image != c.Config.Image || a.Containers[0].State != "running" {
			return fmt.Errorf("reports %+v, Docker shows %s", a.Containers, c.Config.Image)
		}
		return nil
	})
	t.Logf("%s connected again under its ID %s after it was brought back", fl.target.name, time.Since(since).Round(100*time.Millisecond))
}

// checkConsistent checks with Docker that every host runs what the
// rollout's record says, and that no application container was created
// more than once per step that restarts it (forward, rollback).
func (f *rolloutFleet) checkConsistent(t *testing.T, fl fault, final grpcurl.Rollout) {
	t.Helper()
	// The reconnected agent's journal report must not change the record.
	again, err := f.g.GetRollout(fl.ID)
	if err != nil || again.State != final.State {
		t.Errorf("after the agent came back the rollout is %s (%v), was %s", again.State, err, final.State)
	}
	prev, next := f.images["v1"], f.images["v2"]
	creates := fl.Creates(t)
	for _, h := range final.Hosts {
		hh := f.hostOf(t, h.AgentID)
		c := f.e.Inspect(t, hh.app)
		running := c.State != nil && c.State.Running
		img := c.Config.Image
		// want is what the host may run; created, what Docker must have
		// created for it, one container per restarting step (nil: any of
		// at most two).
		var want, created []string
		switch h.Step {
		case "HOST_STEP_PENDING", "HOST_STEP_SKIPPED":
			want, created = []string{prev}, []string{}
		case "HOST_STEP_ROLLED_BACK":
			want, created = []string{prev}, []string{next, prev}
		case "HOST_STEP_ROLLBACK_FAILED":
			// Its forward restart ran; its rollback never reached it.
			want, created = []string{next}, []string{next}
		case "HOST_STEP_FAILED":
			want = []string{prev, next}
		default:
			t.Errorf("%s ends in step %s in a rollout that ended %s", hh.name, h.Step, final.State)
			continue
		}
		if !running || !contains(want, img) {
			t.Errorf("%s (%s) runs %s (running %v), want one of %v", hh.name, h.Step, img, running, want)
		}
		got := creates[hh.app]
		if (created != nil && !slices.Equal(got, created)) || len(got) > 2 {
			t.Errorf("%s (%s): Docker created its container from %v, want %v (once per step)", hh.name, h.Step, got, created)
		}
		t.Logf("  %s: %s, runs %s, created %v", hh.name, h.Step, img, creates[hh.app])
	}
}

// contains reports whether s is in list.
func contains(list []string, s string) bool { return slices.Contains(list, s) }

// converge puts every host back on v1 if the last scenario left any on
// v2, so the next one starts from one release.
func (f *rolloutFleet) converge(t *testing.T) {
	t.Helper()
	mixed := false
	for _, h := range f.hosts {
		if f.e.Inspect(t, h.app).Config.Image != f.images["v1"] {
			mixed = true
		}
	}
	if !mixed {
		return
	}
	run := rollouttest.Start(t, f, fmt.Sprintf(`{"service": %q, "image": %q, "reason": "back to v1 after a fault"}`,
		rollouttest.Service, f.images["v1"]), rollouttest.LoadWorkers)
	if final := run.Finish(t).Final; final.State != "ROLLOUT_STATE_SUCCEEDED" {
		t.Fatalf("rollout back to v1 ended %s: %s", final.State, final.Message)
	}
	rollouttest.CheckAllRun(t, f, "v1")
}

// testAgentKilled SIGKILLs the agent container of a host in its health
// gate, then starts it again once the rollout has ended.
func (f *rolloutFleet) testAgentKilled(t *testing.T) {
	fl := f.startFault(t, "release v2, agent killed", func(h host) { f.e.kill(t, h.agentID) })
	f.waitFailed(t, fl)
	final := f.finishFault(t, fl)
	restarted := time.Now()
	f.e.start(t, fl.target.agentID)
	f.waitBack(t, fl, restarted)
	f.checkConsistent(t, fl, final)
	f.converge(t)
}

// partitionFor is how long the partitioned host stays off the network.
const partitionFor = 8 * time.Second

// testPartition disconnects a host's agent container (not its
// application) from the network while the host is in its health gate and
// connects it again partitionFor later.
func (f *rolloutFleet) testPartition(t *testing.T) {
	fl := f.startFault(t, "release v2, host partitioned", func(h host) { f.disconnect(t, h.agentID) })
	f.waitFailed(t, fl)
	// The partition lasts partitionFor, whenever the failure was seen.
	time.Sleep(time.Until(fl.brokenAt.Add(partitionFor)))
	f.connect(t, fl.target.agentID)
	at := time.Now()
	t.Logf("%s reconnected to the network %s after the partition began", fl.target.name, at.Sub(fl.brokenAt).Round(100*time.Millisecond))
	final := f.finishFault(t, fl)
	f.waitBack(t, fl, at)
	f.checkConsistent(t, fl, final)
	f.converge(t)
}

// disconnect cuts a container off the fleet's network.
func (f *rolloutFleet) disconnect(t *testing.T, id string) {
	t.Helper()
	ctx, cancel := f.e.ctx()
	defer cancel()
	if _, err := f.e.Client.NetworkDisconnect(ctx, f.network, client.NetworkDisconnectOptions{Container: id, Force: true}); err != nil {
		t.Fatalf("disconnect %s from %s: %v", id, f.network, err)
	}
}

// connect attaches a container to the fleet's network again.
func (f *rolloutFleet) connect(t *testing.T, id string) {
	t.Helper()
	ctx, cancel := f.e.ctx()
	defer cancel()
	if _, err := f.e.Client.NetworkConnect(ctx, f.network, client.NetworkConnectOptions{Container: id}); err != nil {
		t.Fatalf("connect %s to %s: %v", id, f.network, err)
	}
}
