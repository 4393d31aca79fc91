package fleet

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"flotilla.dev/e2e/internal/fixture"
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
	started
	// creates records the application containers created from before
	// StartRollout on.
	creates *createRecorder
	target  host
	// targetID is the broken host's agent ID.
	targetID string
	// brokenAt is when the host was broken.
	brokenAt time.Time
}

// startFault rolls v2 out and, once a host of the second batch is in its
// health gate, calls breakHost on it.
func (f *rolloutFleet) startFault(t *testing.T, reason string, breakHost func(host)) fault {
	t.Helper()
	creates := f.recordCreates(t)
	s := started{began: time.Now(), load: fixture.StartLoad(t, f.nginx.URL(upstream), faultLoadWorkers, rolloutTimeout)}
	var resp struct {
		Rollout rolloutJSON `json:"rollout"`
	}
	f.g.rollout(t, "StartRollout", fmt.Sprintf(`{"service": %q, "image": %q, "reason": %q, "strategy": %s}`,
		serviceName, f.images["v2"], reason, faultStrategy), &resp)
	if resp.Rollout.ID == "" {
		t.Fatalf("StartRollout answered %+v", resp)
	}
	s.id = resp.Rollout.ID
	s.watch = f.g.watchRollout(t, s.id, rolloutTimeout)

	var targetID string
	eventually(t, rolloutTimeout, "a host of the second batch in its health gate", func() error {
		select {
		case <-s.watch.done:
			t.Fatalf("WatchRollout ended before the second batch's health gate: %v\n%s", s.watch.err, s.watch.out.String())
		default:
		}
		if targetID == "" {
			r, err := f.g.getRollout(s.id)
			if err != nil {
				return err
			}
			if len(r.Batches) < 2 || len(r.Batches[1].AgentIDs) == 0 {
				return fmt.Errorf("batches %+v", r.Batches)
			}
			targetID = r.Batches[1].AgentIDs[0]
		}
		if s.watch.hostStepped(targetID, "HOST_STEP_HEALTH_CHECK") {
			return nil
		}
		return fmt.Errorf("not yet")
	})
	fl := fault{started: s, creates: creates, target: f.hostOf(t, targetID), targetID: targetID}
	breakHost(fl.target)
	fl.brokenAt = time.Now()
	t.Logf("%s broken in its health gate %s after StartRollout", fl.target.name, fl.brokenAt.Sub(s.began).Round(100*time.Millisecond))
	return fl
}

// hostStepped reports whether the stream showed the agent's host reach step.
func (w *watchStream) hostStepped(agentID, step string) bool {
	_, _, ok := w.hostStepAt(agentID, step)
	return ok
}

// hostStepAt returns when the stream showed the agent's host reach step
// (rolling forward), and the step's message.
func (w *watchStream) hostStepAt(agentID, step string) (time.Time, string, bool) {
	for _, e := range w.events() {
		if h := e.Event.Host; h != nil && h.AgentID == agentID && h.Step == step && !h.RollingBack {
			return e.Event.At, h.Message, true
		}
	}
	return time.Time{}, "", false
}

// waitFailed waits for the broken host to fail, checks it failed within
// agent_lost_after and slack because its agent stopped answering, and
// returns the detection time.
func (f *rolloutFleet) waitFailed(t *testing.T, fl fault) time.Duration {
	t.Helper()
	eventually(t, agentLostAfter+detectionSlack+5*time.Second, fl.target.name+" to fail", func() error {
		select {
		case <-fl.watch.done:
			t.Fatalf("WatchRollout ended before %s failed: %v\n%s", fl.target.name, fl.watch.err, fl.watch.out.String())
		default:
		}
		if fl.watch.hostStepped(fl.targetID, "HOST_STEP_FAILED") {
			return nil
		}
		return fmt.Errorf("not yet")
	})
	failedAt, msg, _ := fl.watch.hostStepAt(fl.targetID, "HOST_STEP_FAILED")
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
func (f *rolloutFleet) finishFault(t *testing.T, fl fault) rolloutJSON {
	t.Helper()
	fl.watch.wait(t)
	final, load := f.finish(t, fl.started)
	t.Logf("load (not asserted): %d requests, %d failed", load.Requests, len(load.Failures))
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
	eventually(t, 90*time.Second, fl.target.name+" to reconnect with the same ID and report its container", func() error {
		a, err := f.g.getAgent(fl.targetID)
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
func (f *rolloutFleet) checkConsistent(t *testing.T, fl fault, final rolloutJSON) {
	t.Helper()
	// The reconnected agent's journal report must not change the record.
	again, err := f.g.getRollout(fl.id)
	if err != nil || again.State != final.State {
		t.Errorf("after the agent came back the rollout is %s (%v), was %s", again.State, err, final.State)
	}
	prev, next := f.images["v1"], f.images["v2"]
	creates := fl.creates.stop(t)
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
func contains(list []string, s string) bool { return count(list, s) > 0 }

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
	s := f.start(t, fmt.Sprintf(`{"service": %q, "image": %q, "reason": "back to v1 after a fault"}`, serviceName, f.images["v1"]))
	s.watch.wait(t)
	if final, _ := f.finish(t, s); final.State != "ROLLOUT_STATE_SUCCEEDED" {
		t.Fatalf("rollout back to v1 ended %s: %s", final.State, final.Message)
	}
	f.checkAllRun(t, f.images["v1"])
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

// createRecorder follows Docker's event stream live and records, for each
// application container name, the images of its create events. Live,
// because the engine replays only its last 256 events to a query with
// since, and other users of the engine can push a rollout's out of them.
type createRecorder struct {
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	byName map[string][]string
	err    error
}

// recordCreates starts recording.
func (f *rolloutFleet) recordCreates(t *testing.T) *createRecorder {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &createRecorder{cancel: cancel, done: make(chan struct{}), byName: map[string][]string{}}
	filters := make(client.Filters).Add("type", "container").Add("event", "create").
		Add("label", fixture.TestLabel+"="+f.e.RunID)
	// Since now: the engine replays what came between this call and its
	// subscription, then streams live.
	res := f.e.Client.Events(ctx, client.EventsListOptions{Since: stamp(time.Now()), Filters: filters})
	apps := map[string]bool{}
	for _, h := range f.hosts {
		apps[h.app] = true
	}
	go func() {
		defer close(r.done)
		for {
			select {
			case m := <-res.Messages:
				if name := m.Actor.Attributes["name"]; apps[name] {
					r.mu.Lock()
					r.byName[name] = append(r.byName[name], m.Actor.Attributes["image"])
					r.mu.Unlock()
				}
			case err := <-res.Err:
				if ctx.Err() == nil {
					r.err = err
				}
				return
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-r.done })
	return r
}

// stop ends the recording, after a moment for the last events to arrive,
// and returns what it saw.
func (r *createRecorder) stop(t *testing.T) map[string][]string {
	t.Helper()
	time.Sleep(time.Second)
	r.cancel()
	<-r.done
	if r.err != nil {
		t.Fatalf("Docker events: %v", r.err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.byName
}
