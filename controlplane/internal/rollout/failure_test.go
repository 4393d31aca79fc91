package rollout_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"flotilla.dev/controlplane/internal/fault"
	flotillav1 "flotilla.dev/gen/flotilla/v1"
)

const (
	stateRollbackFailed = flotillav1.RolloutState_ROLLOUT_STATE_ROLLBACK_FAILED
	stepRollbackFailed  = flotillav1.HostStep_HOST_STEP_ROLLBACK_FAILED
)

var finalStates = []flotillav1.RolloutState{stateSucceeded, stateFailed, stateRolledBack, stateAborted, stateRollbackFailed}

// restartIDs lists the restart commands an agent executed.
func restartIDs(t *testing.T, a *fakeAgent) []string {
	var out []string
	for _, id := range a.executedIDs(t) {
		if strings.Contains(id, ".restart") {
			out = append(out, id)
		}
	}
	return out
}

func TestCanaryFailureRollsBack(t *testing.T) {
	c := newCluster(t, clusterOptions{web: 5, lb: true})
	c.byID["web-01"].set(func(a *fakeAgent) { a.unhealthy[newImage] = true })
	c.start()
	c.putService(nil)
	s := strategy(2)
	s.Canary = 1
	s.MaxFailures = &flotillav1.Limit{Kind: &flotillav1.Limit_Count{Count: 3}} // the canary stops it anyway
	s.AutoRollback = true
	s.HealthyDeadline = durationpb.New(time.Second)
	r := c.waitState(c.startRollout(newImage, s).GetId(), finalStates...)
	if r.GetState() != stateRolledBack || !strings.Contains(r.GetMessage(), "canary host web-01 failed") {
		t.Fatalf("rollout:\n%s", describe(r))
	}
	canary := hostOf(r, "web-01")
	if canary.GetStep() != stepRolledBack || canary.GetPreviousImage() != oldImage || !canary.GetRollingBack() {
		t.Fatalf("canary host: %v", canary)
	}
	if got := c.byID["web-01"].currentImage(); got != oldImage {
		t.Fatalf("canary host runs %s after the rollback, want %s", got, oldImage)
	}
	for _, a := range c.agents[1:] {
		if h := hostOf(r, a.id); h.GetStep() != stepSkipped {
			t.Errorf("%s: %v, want SKIPPED", a.id, h)
		}
		// Later batches were never touched: the image was pre-pulled, but
		// no restart ever reached them.
		if ids := restartIDs(t, a); len(ids) != 0 || a.currentImage() != oldImage {
			t.Errorf("%s got restarts %v", a.id, ids)
		}
	}
	restarts, _ := c.byID["web-01"].snapshot()
	if !slices.Equal(restarts, []string{newImage, oldImage}) {
		t.Fatalf("canary restarts = %v", restarts)
	}
	// The canary stayed drained between its failed gate and its rollback,
	// which drained it again (idempotent) and put it back at the end.
	_, lbLog := c.lb.snapshot()
	if want := []string{"drain " + server(0), "drain " + server(0), "undrain " + server(0)}; !slices.Equal(lbLog, want) {
		t.Fatalf("load balancer log = %v, want %v", lbLog, want)
	}
	evs := c.history(r.GetId())
	checkSequence(t, evs)
	want := append([]flotillav1.HostStep{stepDraining, stepRestarting, stepHealth, stepFailed}, rollbackPass...)
	if got := hostSteps(evs)["web-01"]; !slices.Equal(got, want) {
		t.Fatalf("canary steps = %v, want %v", got, want)
	}
}

func TestMaxFailures(t *testing.T) {
	tests := []struct {
		name    string
		limit   *flotillav1.Limit
		want    flotillav1.RolloutState
		skipped int
	}{
		{"count reached", &flotillav1.Limit{Kind: &flotillav1.Limit_Count{Count: 2}}, stateFailed, 2},
		{"percent reached", &flotillav1.Limit{Kind: &flotillav1.Limit_Percent{Percent: 50}}, stateFailed, 2},
		{"count not reached", &flotillav1.Limit{Kind: &flotillav1.Limit_Count{Count: 3}}, stateSucceeded, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := newCluster(t, clusterOptions{web: 4, lb: true})
			for _, id := range []string{"web-01", "web-02"} {
				c.byID[id].set(func(a *fakeAgent) { a.unhealthy[newImage] = true })
			}
			c.start()
			c.putService(nil)
			s := strategy(2)
			s.MaxFailures = tt.limit
			s.HealthyDeadline = durationpb.New(time.Second)
			r := c.waitState(c.startRollout(newImage, s).GetId(), finalStates...)
			if r.GetState() != tt.want {
				t.Fatalf("rollout:\n%s", describe(r))
			}
			skipped := 0
			for _, a := range c.agents {
				h := hostOf(r, a.id)
				switch a.id {
				case "web-01", "web-02":
					// Failed at the gate, no rollback: left drained, and
					// the message says so.
					if h.GetStep() != stepFailed || !strings.Contains(h.GetMessage(), "left drained") || a.currentImage() != newImage {
						t.Errorf("%s: %v", a.id, h)
					}
				default:
					if h.GetStep() == stepSkipped {
						skipped++
					}
				}
			}
			if skipped != tt.skipped {
				t.Fatalf("%d hosts skipped, want %d:\n%s", skipped, tt.skipped, describe(r))
			}
			_, lbLog := c.lb.snapshot()
			for _, i := range []int{0, 1} {
				if slices.Contains(lbLog, "undrain "+server(i)) {
					t.Errorf("host %s failed its health gate but was undrained: %v", server(i), lbLog)
				}
			}
			if tt.want == stateSucceeded && !strings.Contains(r.GetMessage(), "2 failed within max_failures 3") {
				t.Errorf("message = %q", r.GetMessage())
			}
		})
	}
}

func TestPauseResume(t *testing.T) {
	c := newCluster(t, clusterOptions{web: 3, lb: true})
	c.start()
	c.putService(nil)
	// web-01's pre-pull waits until the rollout is paused: on a loaded
	// machine the whole rollout could otherwise end before the pause.
	pulled := make(chan struct{})
	c.byID["web-01"].set(func(ag *fakeAgent) { ag.hold = pulled })
	id := c.startRollout(newImage, strategy(1)).GetId()
	p, err := c.engine().PauseRollout(operator(), id, "look at the canary")
	close(pulled)
	if err != nil {
		t.Fatal(err)
	}
	if p.GetState() != statePaused || !strings.Contains(p.GetMessage(), "look at the canary") {
		t.Fatalf("after pause: %s", describe(p))
	}
	// Pausing again is harmless; resuming is needed to go on.
	if _, err := c.engine().PauseRollout(operator(), id, ""); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	r := c.get(id)
	for _, h := range r.GetHosts() {
		if h.GetStep() != stepPending {
			t.Fatalf("a host started while paused:\n%s", describe(r))
		}
	}
	if r.GetState() != statePaused {
		t.Fatalf("state %s while paused", r.GetState())
	}
	if _, err := c.engine().ResumeRollout(operator(), id); err != nil {
		t.Fatal(err)
	}
	// Pause again while the first host is in progress: it finishes, no
	// other starts.
	c.waitHost(id, "web-01", stepHealth)
	if _, err := c.engine().PauseRollout(operator(), id, ""); err != nil {
		t.Fatal(err)
	}
	c.waitHost(id, "web-01", stepDone)
	time.Sleep(200 * time.Millisecond)
	r = c.get(id)
	if r.GetState() != statePaused || hostOf(r, "web-02").GetStep() != stepPending {
		t.Fatalf("second pause:\n%s", describe(r))
	}
	if _, err := c.engine().ResumeRollout(operator(), id); err != nil {
		t.Fatal(err)
	}
	if r := c.waitState(id, finalStates...); r.GetState() != stateSucceeded {
		t.Fatalf("after resume:\n%s", describe(r))
	}
	if _, err := c.engine().ResumeRollout(operator(), id); !errors.Is(err, fault.ErrPrecondition) {
		t.Fatalf("resume of a finished rollout = %v, want FailedPrecondition", err)
	}
	evs := c.history(id)
	checkSequence(t, evs)
	var states []flotillav1.RolloutState
	for _, ev := range evs {
		if s := ev.GetState(); s != nil {
			states = append(states, s.GetState())
		}
	}
	want := []flotillav1.RolloutState{flotillav1.RolloutState_ROLLOUT_STATE_PREPARING, statePaused,
		flotillav1.RolloutState_ROLLOUT_STATE_PREPARING, stateRunning, statePaused, stateRunning, stateSucceeded}
	if !slices.Equal(states, want) && !slices.Equal(states, slices.Delete(slices.Clone(want), 2, 3)) {
		t.Fatalf("state history %v, want %v", states, want)
	}
}

func TestAbort(t *testing.T) {
	for _, rollback := range []bool{false, true} {
		name := "without rollback"
		if rollback {
			name = "with rollback"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c := newCluster(t, clusterOptions{web: 3, lb: true})
			c.start()
			c.putService(nil)
			s := strategy(1)
			s.PauseBetweenBatches = durationpb.New(time.Hour)
			id := c.startRollout(newImage, s).GetId()
			c.waitHost(id, "web-01", stepDone)
			r, err := c.engine().AbortRollout(operator(), id, "wrong image", rollback)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(r.GetMessage(), "wrong image") {
				t.Errorf("message after abort = %q", r.GetMessage())
			}
			want, wantImage, wantStep := stateAborted, newImage, stepDone
			if rollback {
				want, wantImage, wantStep = stateRolledBack, oldImage, stepRolledBack
			}
			r = c.waitState(id, finalStates...)
			if r.GetState() != want {
				t.Fatalf("after abort:\n%s", describe(r))
			}
			if h := hostOf(r, "web-01"); h.GetStep() != wantStep || c.byID["web-01"].currentImage() != wantImage {
				t.Fatalf("web-01: %v on %s", h, c.byID["web-01"].currentImage())
			}
			for _, a := range c.agents[1:] {
				if h := hostOf(r, a.id); h.GetStep() != stepSkipped || !strings.Contains(h.GetMessage(), "wrong image") || len(restartIDs(t, a)) != 0 {
					t.Errorf("%s: %v", a.id, h)
				}
			}
			if _, err := c.engine().AbortRollout(operator(), id, "", false); !errors.Is(err, fault.ErrPrecondition) {
				t.Fatalf("second abort = %v, want FailedPrecondition", err)
			}
			checkSequence(t, c.history(id))
		})
	}
}

func TestOfflineHosts(t *testing.T) {
	t.Run("skip", func(t *testing.T) {
		t.Parallel()
		c, _ := offlineCluster(t)
		s := strategy(2)
		r := c.waitState(c.startRollout(newImage, s).GetId(), finalStates...)
		if r.GetState() != stateSucceeded || len(r.GetHosts()) != 2 {
			t.Fatalf("rollout:\n%s", describe(r))
		}
		if ex := r.GetExcluded(); len(ex) != 1 || ex[0].GetAgentId() != "web-03" || ex[0].GetReason() != "offline" {
			t.Fatalf("excluded = %v", ex)
		}
	})
	t.Run("fail", func(t *testing.T) {
		t.Parallel()
		c, _ := offlineCluster(t)
		s := strategy(2)
		s.OfflineHosts = flotillav1.OfflinePolicy_OFFLINE_POLICY_FAIL
		_, err := c.engine().StartRollout(operator(), &flotillav1.StartRolloutRequest{Service: serviceName, Image: newImage, Strategy: s}, "operator:at-1")
		if !errors.Is(err, fault.ErrPrecondition) || !strings.Contains(err.Error(), "web-03") {
			t.Fatalf("StartRollout = %v, want FailedPrecondition naming web-03", err)
		}
	})
	t.Run("wait, host comes back", func(t *testing.T) {
		t.Parallel()
		c, offline := offlineCluster(t)
		s := strategy(3)
		s.OfflineHosts = flotillav1.OfflinePolicy_OFFLINE_POLICY_WAIT
		id := c.startRollout(newImage, s).GetId()
		time.Sleep(200 * time.Millisecond)
		if r := c.get(id); r.GetState() != flotillav1.RolloutState_ROLLOUT_STATE_PREPARING || !strings.Contains(hostOf(r, "web-03").GetMessage(), "offline") {
			t.Fatalf("while web-03 is away:\n%s", describe(r))
		}
		offline.start()
		r := c.waitState(id, finalStates...)
		if r.GetState() != stateSucceeded || offline.currentImage() != newImage {
			t.Fatalf("rollout:\n%s", describe(r))
		}
	})
	t.Run("wait, host stays away", func(t *testing.T) {
		t.Parallel()
		c, _ := offlineCluster(t)
		s := strategy(3)
		s.OfflineHosts = flotillav1.OfflinePolicy_OFFLINE_POLICY_WAIT
		s.OfflineWait = durationpb.New(300 * time.Millisecond)
		s.MaxFailures = &flotillav1.Limit{Kind: &flotillav1.Limit_Count{Count: 2}}
		r := c.waitState(c.startRollout(newImage, s).GetId(), finalStates...)
		h := hostOf(r, "web-03")
		if r.GetState() != stateSucceeded || h.GetStep() != stepFailed || !strings.Contains(h.GetMessage(), "offline_wait") {
			t.Fatalf("rollout:\n%s", describe(r))
		}
		for _, id := range []string{"web-01", "web-02"} {
			if hostOf(r, id).GetStep() != stepDone {
				t.Fatalf("rollout:\n%s", describe(r))
			}
		}
	})
}

// offlineCluster is three hosts without a load balancer, web-03 never
// started.
func offlineCluster(t *testing.T) (*cluster, *fakeAgent) {
	c := newCluster(t, clusterOptions{web: 3})
	c.startCP()
	for _, a := range c.agents[:2] {
		a.start()
	}
	c.waitConnected(c.agents[:2]...)
	c.putService(nil)
	return c, c.agents[2]
}

func TestAgentLostMidStep(t *testing.T) {
	for _, when := range []string{"restart", "after-restart"} {
		t.Run(when, func(t *testing.T) {
			t.Parallel()
			c := newCluster(t, clusterOptions{web: 2, lb: true, lostAfter: time.Second})
			c.byID["web-01"].set(func(a *fakeAgent) { a.freezeOn = when })
			c.start()
			c.putService(nil)
			s := strategy(1)
			s.HealthyDeadline = durationpb.New(time.Minute)
			id := c.startRollout(newImage, s).GetId()
			start := time.Now()
			// The restart's own deadline is 5 minutes and the health
			// gate's a minute: the host fails after about agent_lost_after
			// (1s here) instead.
			r := c.waitState(id, finalStates...)
			elapsed := time.Since(start)
			h := hostOf(r, "web-01")
			if r.GetState() != stateFailed || h.GetStep() != stepFailed || !strings.Contains(h.GetMessage(), "stopped answering") {
				t.Fatalf("rollout:\n%s", describe(r))
			}
			if !strings.Contains(h.GetMessage(), "left drained") {
				t.Errorf("message %q does not say the host stays drained", h.GetMessage())
			}
			t.Logf("host failed %s after the start (agent_lost_after 1s): %s", elapsed, h.GetMessage())
		})
	}
}

func TestRestartFailurePutsHostBack(t *testing.T) {
	c := newCluster(t, clusterOptions{web: 2, lb: true})
	c.byID["web-01"].set(func(a *fakeAgent) { a.failRestart = true })
	c.start()
	c.putService(nil)
	r := c.waitState(c.startRollout(newImage, strategy(1)).GetId(), finalStates...)
	h := hostOf(r, "web-01")
	if r.GetState() != stateFailed || h.GetStep() != stepFailed || !strings.Contains(h.GetMessage(), "back in the load balancer") {
		t.Fatalf("rollout:\n%s", describe(r))
	}
	// The agent kept the previous container, so the host was undrained.
	_, lbLog := c.lb.snapshot()
	if want := []string{"drain " + server(0), "undrain " + server(0)}; !slices.Equal(lbLog, want) {
		t.Fatalf("load balancer log = %v, want %v", lbLog, want)
	}
	if hostOf(r, "web-02").GetStep() != stepSkipped {
		t.Fatalf("web-02 not skipped:\n%s", describe(r))
	}
}

func TestPullFailureFailsTheHostBeforeAnyRestart(t *testing.T) {
	c := newCluster(t, clusterOptions{web: 3})
	c.byID["web-02"].set(func(a *fakeAgent) { a.failPull = true })
	c.start()
	c.putService(nil)
	s := strategy(1)
	s.AutoRollback = true
	r := c.waitState(c.startRollout(newImage, s).GetId(), finalStates...)
	if r.GetState() != stateFailed || !strings.Contains(r.GetMessage(), "nothing to roll back") {
		t.Fatalf("rollout:\n%s", describe(r))
	}
	if h := hostOf(r, "web-02"); h.GetStep() != stepFailed || !strings.Contains(h.GetMessage(), "registry unreachable") {
		t.Fatalf("web-02: %v", h)
	}
	for _, a := range c.agents {
		if ids := restartIDs(t, a); len(ids) != 0 {
			t.Errorf("%s restarted: %v", a.id, ids)
		}
	}
}

func TestRollbackService(t *testing.T) {
	c := newCluster(t, clusterOptions{web: 2, lb: true})
	c.start()
	c.putService(strategy(2))
	if _, err := c.engine().RollbackService(operator(), &flotillav1.RollbackServiceRequest{Service: serviceName}, "operator:at-1"); !errors.Is(err, fault.ErrPrecondition) {
		t.Fatalf("rollback without history = %v, want FailedPrecondition", err)
	}
	v2 := c.waitState(c.startRollout(newImage, nil).GetId(), finalStates...)
	v3 := c.waitState(c.startRollout("registry.example/app:3.0", nil).GetId(), finalStates...)
	if v2.GetState() != stateSucceeded || v3.GetState() != stateSucceeded {
		t.Fatalf("setup:\n%s\n%s", describe(v2), describe(v3))
	}
	rb, err := c.engine().RollbackService(operator(), &flotillav1.RollbackServiceRequest{Service: serviceName, Reason: "3.0 leaks memory"}, "operator:at-1")
	if err != nil {
		t.Fatal(err)
	}
	if rb.GetImage() != newImage || rb.GetRollbackOf() != v3.GetId() {
		t.Fatalf("rollback rollout = image %s, rollback_of %s; want %s of %s", rb.GetImage(), rb.GetRollbackOf(), newImage, v3.GetId())
	}
	if r := c.waitState(rb.GetId(), finalStates...); r.GetState() != stateSucceeded {
		t.Fatalf("rollback:\n%s", describe(r))
	}
	for _, a := range c.agents {
		if a.currentImage() != newImage {
			t.Errorf("%s runs %s", a.id, a.currentImage())
		}
	}
	// A named revision: back to 3.0's rollout.
	named, err := c.engine().RollbackService(operator(), &flotillav1.RollbackServiceRequest{Service: serviceName, ToRolloutId: v3.GetId()}, "operator:at-1")
	if err != nil || named.GetImage() != "registry.example/app:3.0" || named.GetRollbackOf() != rb.GetId() {
		t.Fatalf("named rollback = %v, %v", named, err)
	}
	c.waitState(named.GetId(), finalStates...)
	list, err := c.engine().ListRollouts(operator(), storeQuery(serviceName))
	if err != nil || len(list) != 4 || list[0].GetId() != named.GetId() || list[3].GetId() != v2.GetId() {
		t.Fatalf("history = %v, %v", list, err)
	}
}

func TestWatchFollowsLiveEvents(t *testing.T) {
	c := newCluster(t, clusterOptions{web: 2, lb: true})
	c.start()
	c.putService(nil)
	s := strategy(1)
	s.Canary = 1
	s.PauseBetweenBatches = durationpb.New(100 * time.Millisecond)
	id := c.startRollout(newImage, s).GetId()
	ctx, cancel := context.WithTimeout(operator(), waitFor)
	defer cancel()
	var evs []*flotillav1.RolloutEvent
	if err := c.engine().WatchRollout(ctx, id, func(ev *flotillav1.RolloutEvent) error {
		evs = append(evs, ev)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	checkSequence(t, evs)
	if evs[len(evs)-1].GetState().GetState() != stateSucceeded {
		t.Fatalf("last event %v", evs[len(evs)-1])
	}
	for agent, steps := range hostSteps(evs) {
		if !slices.Equal(steps, fullPass) {
			t.Errorf("%s: %v", agent, steps)
		}
	}
}
