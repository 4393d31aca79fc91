package rollout_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/controlplane/internal/fault"
)

const alternatePort = 8081

// blueGreenCluster is a running cluster of n web hosts behind lb-1 whose
// upstream lists them on serverPort, with the service's load balancer
// given its alternate port.
func blueGreenCluster(t *testing.T, n int, strategy *flotillav1.RolloutStrategy) *cluster {
	t.Helper()
	c := newCluster(t, clusterOptions{web: n, lb: true})
	for _, a := range c.agents {
		c.lb.servers = append(c.lb.servers, upstreamServer(a, serverPort))
	}
	c.start()
	svc := c.service(strategy)
	svc.LoadBalancer.AlternatePort = alternatePort
	if _, err := c.engine().PutService(operator(), svc); err != nil {
		t.Fatalf("PutService: %v", err)
	}
	return c
}

func upstreamServer(a *fakeAgent, port int) string {
	return fmt.Sprintf("%s:%d", a.labels["address"], port)
}

func blueGreen(keep time.Duration) *flotillav1.RolloutStrategy {
	return &flotillav1.RolloutStrategy{
		MinHealthyTime: durationpb.New(30 * time.Millisecond), HealthyDeadline: durationpb.New(2 * time.Second),
		BlueGreen: &flotillav1.BlueGreen{KeepPrevious: durationpb.New(keep)},
	}
}

// checkUpstream checks that the load balancer lists every host on port.
func checkUpstream(t *testing.T, c *cluster, port int) {
	t.Helper()
	var want []string
	for _, a := range c.agents {
		want = append(want, upstreamServer(a, port))
	}
	if got := c.lb.upstreamServers(); !slices.Equal(got, want) {
		t.Fatalf("upstream lists %v, want %v", got, want)
	}
}

// TestBlueGreenSwitchKeepAndNext: every candidate starts beside its live
// container, the load balancer switches every host in one command, the
// previous containers are kept for keep_previous and then removed; the next
// rollout starts its candidates on the port that is free then.
func TestBlueGreenSwitchKeepAndNext(t *testing.T) {
	c := blueGreenCluster(t, 3, nil)
	r := c.startRollout(newImage, blueGreen(300*time.Millisecond))
	if len(r.GetBatches()) != 1 {
		t.Fatalf("a blue-green plan has %d batches, want 1", len(r.GetBatches()))
	}
	switched := c.waitState(r.GetId(), flotillav1.RolloutState_ROLLOUT_STATE_SWITCHED, flotillav1.RolloutState_ROLLOUT_STATE_SUCCEEDED)
	if switched.GetState() == flotillav1.RolloutState_ROLLOUT_STATE_SWITCHED && switched.GetKeepUntil() == nil {
		t.Errorf("a SWITCHED rollout shows no keep_until")
	}
	done := c.waitState(r.GetId(), flotillav1.RolloutState_ROLLOUT_STATE_SUCCEEDED)
	checkUpstream(t, c, alternatePort)
	_, lbLog := c.lb.snapshot()
	if len(lbLog) != 1 || strings.Count(lbLog[0], ">") != 3 {
		t.Fatalf("load balancer log %v, want one swap of the 3 hosts", lbLog)
	}
	for _, a := range c.agents {
		image, port, next, prev := a.model()
		if image != newImage || port != alternatePort || next != "" || prev != "" {
			t.Errorf("%s: live %s on %d, candidate %q, previous %q; want %s on %d alone", a.id, image, port, next, prev, newImage, alternatePort)
		}
		if restarts, _ := a.snapshot(); len(restarts) != 0 {
			t.Errorf("%s was restarted: %v", a.id, restarts)
		}
	}
	evs := c.history(done.GetId())
	checkSequence(t, evs)
	steps := hostSteps(evs)[c.agents[0].id]
	want := []flotillav1.HostStep{flotillav1.HostStep_HOST_STEP_STARTING_CANDIDATE, flotillav1.HostStep_HOST_STEP_READY,
		flotillav1.HostStep_HOST_STEP_SWITCHING, flotillav1.HostStep_HOST_STEP_DONE}
	if !slices.Equal(steps, want) {
		t.Errorf("host steps %v, want %v", steps, want)
	}

	// The next rollout finds the hosts live on the alternate port (their
	// reports) and starts its candidates on server_port.
	eventually(t, "heartbeats to report the alternate port", func() bool {
		return liveOn(c, alternatePort)
	})
	back := c.startRollout(oldImage, blueGreen(0))
	c.waitState(back.GetId(), flotillav1.RolloutState_ROLLOUT_STATE_SUCCEEDED)
	checkUpstream(t, c, serverPort)
}

// liveOn reports whether the registry shows every host's container on port.
func liveOn(c *cluster, port int32) bool {
	for _, a := range c.agents {
		ag, ok := c.current().Server.Registry().Get(a.id)
		if !ok || ag.LastHeartbeat == nil || len(ag.LastHeartbeat.GetContainers()) == 0 ||
			!slices.Contains(ag.LastHeartbeat.GetContainers()[0].GetHostPorts(), port) {
			return false
		}
	}
	return true
}

// TestBlueGreenSwitchBack: RollbackService on a SWITCHED rollout switches
// the load balancer back in one command and gives each host's previous
// container its name back; nothing is re-created.
func TestBlueGreenSwitchBack(t *testing.T) {
	c := blueGreenCluster(t, 3, nil)
	r := c.startRollout(newImage, blueGreen(time.Hour))
	switched := c.waitState(r.GetId(), flotillav1.RolloutState_ROLLOUT_STATE_SWITCHED)
	if until := switched.GetKeepUntil().AsTime(); until.Before(time.Now().Add(50 * time.Minute)) {
		t.Errorf("keep_until %s, want about an hour from now", until)
	}
	checkUpstream(t, c, alternatePort)
	if _, err := c.engine().RollbackService(operator(), &flotillav1.RollbackServiceRequest{Service: serviceName, ToRolloutId: r.GetId()}, "operator:at-1"); !errors.Is(err, fault.ErrInvalid) ||
		!strings.Contains(err.Error(), "to_rollout_id") {
		t.Fatalf("RollbackService with to_rollout_id on a switched rollout: %v, want InvalidArgument naming to_rollout_id", err)
	}
	out, err := c.engine().RollbackService(operator(), &flotillav1.RollbackServiceRequest{Service: serviceName, Reason: "error rate"}, "operator:at-1")
	if err != nil {
		t.Fatalf("RollbackService: %v", err)
	}
	if out.GetId() != r.GetId() {
		t.Fatalf("RollbackService answered rollout %s, want the switched one %s", out.GetId(), r.GetId())
	}
	final := c.waitState(r.GetId(), flotillav1.RolloutState_ROLLOUT_STATE_ROLLED_BACK)
	checkUpstream(t, c, serverPort)
	_, lbLog := c.lb.snapshot()
	if len(lbLog) != 2 || strings.Count(lbLog[1], ">") != 3 {
		t.Fatalf("load balancer log %v, want the switch and one switch back of the 3 hosts", lbLog)
	}
	for _, a := range c.agents {
		image, port, next, prev := a.model()
		if image != oldImage || port != serverPort || next != "" || prev != "" {
			t.Errorf("%s: live %s on %d, candidate %q, previous %q; want %s on %d alone", a.id, image, port, next, prev, oldImage, serverPort)
		}
		if h := hostOf(final, a.id); h.GetStep() != flotillav1.HostStep_HOST_STEP_ROLLED_BACK {
			t.Errorf("%s ends %s: %s", a.id, h.GetStep(), h.GetMessage())
		}
		if restarts, _ := a.snapshot(); len(restarts) != 0 {
			t.Errorf("%s was restarted: %v", a.id, restarts)
		}
	}
	checkSequence(t, c.history(r.GetId()))
}

// TestBlueGreenCandidateFails: a candidate that is not healthy stops the
// rollout before any switch; the other candidates are removed and the
// load balancer never moved.
func TestBlueGreenCandidateFails(t *testing.T) {
	c := blueGreenCluster(t, 3, nil)
	c.agents[1].set(func(a *fakeAgent) { a.unhealthy[newImage] = true })
	r := c.startRollout(newImage, blueGreen(time.Hour))
	final := c.waitState(r.GetId(), flotillav1.RolloutState_ROLLOUT_STATE_ROLLED_BACK, flotillav1.RolloutState_ROLLOUT_STATE_FAILED)
	if final.GetState() != flotillav1.RolloutState_ROLLOUT_STATE_ROLLED_BACK {
		t.Fatalf("rollout ended %s, want ROLLED_BACK:\n%s", final.GetState(), describe(final))
	}
	checkUpstream(t, c, serverPort)
	for _, a := range c.agents {
		image, port, next, prev := a.model()
		if image != oldImage || port != serverPort || next != "" || prev != "" {
			t.Errorf("%s: live %s on %d, candidate %q, previous %q; want %s on %d alone", a.id, image, port, next, prev, oldImage, serverPort)
		}
	}
	if h := hostOf(final, c.agents[1].id); h.GetStep() != flotillav1.HostStep_HOST_STEP_FAILED || !strings.Contains(h.GetMessage(), "live container kept serving") {
		t.Errorf("the unhealthy host ends %s: %q", h.GetStep(), h.GetMessage())
	}
}

// TestSurge: each host's new container starts beside the old one and
// takes its place in the upstream before the old one goes; nothing is
// drained.
func TestSurge(t *testing.T) {
	c := blueGreenCluster(t, 3, nil)
	s := strategy(1)
	s.Surge = true
	r := c.startRollout(newImage, s)
	c.waitState(r.GetId(), flotillav1.RolloutState_ROLLOUT_STATE_SUCCEEDED)
	checkUpstream(t, c, alternatePort)
	_, lbLog := c.lb.snapshot()
	if len(lbLog) != 3 {
		t.Fatalf("load balancer log %v, want one swap per host and no drain", lbLog)
	}
	for _, a := range c.agents {
		image, port, next, prev := a.model()
		if image != newImage || port != alternatePort || next != "" || prev != "" {
			t.Errorf("%s: live %s on %d, candidate %q, previous %q; want %s on %d alone", a.id, image, port, next, prev, newImage, alternatePort)
		}
	}
}

// TestSideBySideRefused: the fields blue-green and surge need, by name.
func TestSideBySideRefused(t *testing.T) {
	c := newCluster(t, clusterOptions{web: 1, lb: true})
	c.start()
	c.putService(nil) // no alternate_port
	for _, tc := range []struct {
		name  string
		s     *flotillav1.RolloutStrategy
		code  error
		field string
	}{
		{"blue-green without alternate_port", blueGreen(time.Minute), fault.ErrPrecondition, "load_balancer.alternate_port"},
		{"surge without alternate_port", &flotillav1.RolloutStrategy{Surge: true}, fault.ErrPrecondition, "load_balancer.alternate_port"},
		{"blue-green with a canary", &flotillav1.RolloutStrategy{Canary: 1, BlueGreen: &flotillav1.BlueGreen{}}, fault.ErrInvalid, "strategy.canary"},
		{"blue-green with batches", &flotillav1.RolloutStrategy{Batch: &flotillav1.RolloutStrategy_BatchSize{BatchSize: 2}, BlueGreen: &flotillav1.BlueGreen{}}, fault.ErrInvalid, "strategy.batch_size"},
		{"blue-green and surge", &flotillav1.RolloutStrategy{Surge: true, BlueGreen: &flotillav1.BlueGreen{}}, fault.ErrInvalid, "strategy.surge"},
		{"negative keep_previous", &flotillav1.RolloutStrategy{BlueGreen: &flotillav1.BlueGreen{KeepPrevious: durationpb.New(-time.Second)}}, fault.ErrInvalid, "strategy.blue_green.keep_previous"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.engine().StartRollout(operator(), &flotillav1.StartRolloutRequest{Service: serviceName, Image: newImage, Strategy: tc.s}, "operator:at-1")
			if !errors.Is(err, tc.code) || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("StartRollout: %v, want %s naming %s", err, tc.code, tc.field)
			}
		})
	}
	svc := c.service(nil)
	svc.LoadBalancer.AlternatePort = serverPort
	if _, err := c.engine().PutService(operator(), svc); !errors.Is(err, fault.ErrInvalid) || !strings.Contains(err.Error(), "service.load_balancer.alternate_port") {
		t.Fatalf("PutService with alternate_port = server_port: %v, want InvalidArgument naming service.load_balancer.alternate_port", err)
	}
}

// TestBlueGreenSurvivesARestart: a control plane restarted while the
// rollout is SWITCHED finds it SWITCHED with the same keep_until, and a
// switch back after the restart works with nothing re-created.
func TestBlueGreenSurvivesARestart(t *testing.T) {
	c := blueGreenCluster(t, 2, nil)
	r := c.startRollout(newImage, blueGreen(time.Hour))
	before := c.waitState(r.GetId(), flotillav1.RolloutState_ROLLOUT_STATE_SWITCHED)
	c.restartCP()
	after := c.waitState(r.GetId(), flotillav1.RolloutState_ROLLOUT_STATE_SWITCHED)
	if !after.GetKeepUntil().AsTime().Equal(before.GetKeepUntil().AsTime()) {
		t.Fatalf("keep_until %s after the restart, was %s", after.GetKeepUntil().AsTime(), before.GetKeepUntil().AsTime())
	}
	eventually(t, "the agents to reconnect", func() bool {
		_, err := c.engine().RollbackService(operator(), &flotillav1.RollbackServiceRequest{Service: serviceName}, "operator:at-1")
		return err == nil
	})
	c.waitState(r.GetId(), flotillav1.RolloutState_ROLLOUT_STATE_ROLLED_BACK)
	checkUpstream(t, c, serverPort)
	for _, a := range c.agents {
		if image, port, next, prev := a.model(); image != oldImage || port != serverPort || next != "" || prev != "" {
			t.Errorf("%s: live %s on %d, candidate %q, previous %q", a.id, image, port, next, prev)
		}
		a.executedIDs(t) // no command ran twice
	}
}

// TestSurgeRollback: a surge rollout whose second host fails rolls the
// first back with a surge too: new container beside, swap, old removed.
func TestSurgeRollback(t *testing.T) {
	c := blueGreenCluster(t, 2, nil)
	c.agents[1].set(func(a *fakeAgent) { a.unhealthy[newImage] = true })
	s := strategy(1)
	s.Surge, s.AutoRollback = true, true
	r := c.startRollout(newImage, s)
	final := c.waitState(r.GetId(), flotillav1.RolloutState_ROLLOUT_STATE_ROLLED_BACK, flotillav1.RolloutState_ROLLOUT_STATE_FAILED,
		flotillav1.RolloutState_ROLLOUT_STATE_ROLLBACK_FAILED)
	if final.GetState() != flotillav1.RolloutState_ROLLOUT_STATE_ROLLED_BACK {
		t.Fatalf("rollout ended %s:\n%s", final.GetState(), describe(final))
	}
	first := c.agents[0]
	if image, port, next, prev := first.model(); image != oldImage || port != serverPort || next != "" || prev != "" {
		t.Errorf("%s: live %s on %d, candidate %q, previous %q; want %s on %d alone", first.id, image, port, next, prev, oldImage, serverPort)
	}
	checkUpstream(t, c, serverPort)
}
