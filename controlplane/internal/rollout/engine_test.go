package rollout_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/controlplane/internal/fault"
	"flotilla.dev/controlplane/internal/store"
)

const (
	stepPending     = flotillav1.HostStep_HOST_STEP_PENDING
	stepDraining    = flotillav1.HostStep_HOST_STEP_DRAINING
	stepRestarting  = flotillav1.HostStep_HOST_STEP_RESTARTING
	stepHealth      = flotillav1.HostStep_HOST_STEP_HEALTH_CHECK
	stepUndraining  = flotillav1.HostStep_HOST_STEP_UNDRAINING
	stepDone        = flotillav1.HostStep_HOST_STEP_DONE
	stepFailed      = flotillav1.HostStep_HOST_STEP_FAILED
	stepSkipped     = flotillav1.HostStep_HOST_STEP_SKIPPED
	stepRolledBack  = flotillav1.HostStep_HOST_STEP_ROLLED_BACK
	stateRunning    = flotillav1.RolloutState_ROLLOUT_STATE_RUNNING
	statePaused     = flotillav1.RolloutState_ROLLOUT_STATE_PAUSED
	stateSucceeded  = flotillav1.RolloutState_ROLLOUT_STATE_SUCCEEDED
	stateFailed     = flotillav1.RolloutState_ROLLOUT_STATE_FAILED
	stateRolledBack = flotillav1.RolloutState_ROLLOUT_STATE_ROLLED_BACK
	stateAborted    = flotillav1.RolloutState_ROLLOUT_STATE_ABORTED
)

// fullPass is the step history of a host that went through the rollout
// behind a load balancer.
var fullPass = []flotillav1.HostStep{stepDraining, stepRestarting, stepHealth, stepUndraining, stepDone}

// rollbackPass is what follows when the host is then rolled back.
var rollbackPass = []flotillav1.HostStep{stepDraining, stepRestarting, stepHealth, stepUndraining, stepRolledBack}

// server is the upstream server of web host i (0-based: web-01 is 0).
func server(i int) string { return fmt.Sprintf("10.0.0.%d:%d", i+2, serverPort) }

// checkLBLog checks that the load balancer saw, batch after batch, a drain
// then an undrain of each host of the batch, and nothing else.
func checkLBLog(t *testing.T, log []string, batches [][]int) {
	t.Helper()
	pos := 0
	for _, b := range batches {
		n := 2 * len(b)
		if pos+n > len(log) {
			t.Fatalf("load balancer log %v is short of batch %v", log, b)
		}
		chunk := log[pos : pos+n]
		for _, i := range b {
			d, u := slices.Index(chunk, "drain "+server(i)), slices.Index(chunk, "undrain "+server(i))
			if d < 0 || u < 0 || d > u {
				t.Fatalf("load balancer log %v: batch %v lacks drain then undrain of %s", log, b, server(i))
			}
		}
		pos += n
	}
	if pos != len(log) {
		t.Fatalf("load balancer log %v has more than the batches %v", log, batches)
	}
}

func TestHappyPath(t *testing.T) {
	c := newCluster(t, clusterOptions{web: 4, lb: true})
	c.start()
	c.putService(nil)
	s := strategy(1)
	s.Canary = 1
	s.Batch = &flotillav1.RolloutStrategy_BatchPercent{BatchPercent: 50}
	started := c.startRollout(newImage, s)
	if started.GetState() != flotillav1.RolloutState_ROLLOUT_STATE_PREPARING || started.GetId() == "" {
		t.Fatalf("started = %v", started)
	}
	// 4 hosts: a canary of 1, then batches of ceil(50% of 4) = 2.
	wantBatches := [][]string{{"web-01"}, {"web-02", "web-03"}, {"web-04"}}
	for i, b := range started.GetBatches() {
		if !slices.Equal(b.GetAgentIds(), wantBatches[i]) || b.GetCanary() != (i == 0) {
			t.Fatalf("batch %d = %v, want %v", i, b, wantBatches[i])
		}
	}
	r := c.waitState(started.GetId(), stateSucceeded, stateFailed, stateRolledBack)
	if r.GetState() != stateSucceeded {
		t.Fatalf("rollout ended %s:\n%s", r.GetState(), describe(r))
	}
	for _, a := range c.agents {
		h := hostOf(r, a.id)
		if h.GetStep() != stepDone || h.GetPreviousImage() != oldImage || h.GetStartedAt() == nil || h.GetFinishedAt() == nil {
			t.Errorf("%s: %v", a.id, h)
		}
		restarts, _ := a.snapshot()
		if !slices.Equal(restarts, []string{newImage}) {
			t.Errorf("%s restarted to %v, want once to %s", a.id, restarts, newImage)
		}
		want := []string{r.GetId() + "." + a.id + ".pull", r.GetId() + "." + a.id + ".restart"}
		if got := a.executedIDs(t); !slices.Equal(got, want) {
			t.Errorf("%s executed %v, want %v", a.id, got, want)
		}
	}
	// The load balancer drained then undrained each host once, a batch at a
	// time: every host of a batch is back before the next batch is drained.
	_, lbLog := c.lb.snapshot()
	checkLBLog(t, lbLog, [][]int{{0}, {1, 2}, {3}})
	evs := c.history(r.GetId())
	checkSequence(t, evs)
	for agent, steps := range hostSteps(evs) {
		if !slices.Equal(steps, fullPass) {
			t.Errorf("%s went through %v, want %v", agent, steps, fullPass)
		}
	}
	for _, m := range []struct {
		name, label, value string
		want               float64
	}{
		{"flotilla_rollouts_finished_total", "state", "succeeded", 1},
		{"flotilla_rollouts_active", "state", "running", 0},
		{"flotilla_rollout_hosts", "step", "done", 0}, // the rollout ended: no host counted any more
		{"flotilla_rollout_host_step_duration_seconds", "step", "health_check", 4},
		{"flotilla_rollout_batch_duration_seconds", "", "", 3},
		{"flotilla_rollouts_started_total", "", "", 1},
	} {
		// The runner counts its rollout's end once it is stored, so a
		// reader of the final state may come first.
		eventually(t, fmt.Sprintf("%s{%s=%q} to be %v", m.name, m.label, m.value, m.want), func() bool {
			return c.metric(m.name, m.label, m.value) == m.want
		})
	}
	svc, err := c.engine().GetService(operator(), serviceName)
	if err != nil || svc.GetCurrentImage() != newImage {
		t.Fatalf("service after the rollout = %v, %v; want current image %s", svc, err, newImage)
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

func TestSecondStartIsRefused(t *testing.T) {
	c := newCluster(t, clusterOptions{web: 2})
	c.start()
	c.putService(nil)
	s := strategy(1)
	s.PauseBetweenBatches = durationpb.New(time.Hour)
	first := c.startRollout(newImage, s)
	_, err := c.engine().StartRollout(operator(), &flotillav1.StartRolloutRequest{Service: serviceName, Image: "registry.example/app:3.0"}, "operator:at-1")
	if !errors.Is(err, fault.ErrPrecondition) || !strings.Contains(err.Error(), first.GetId()) {
		t.Fatalf("second StartRollout = %v, want FailedPrecondition naming %s", err, first.GetId())
	}
	// A dry run is still allowed: it stores nothing.
	if _, err := c.engine().StartRollout(operator(), &flotillav1.StartRolloutRequest{Service: serviceName, Image: "registry.example/app:3.0", DryRun: true}, "operator:at-1"); err != nil {
		t.Fatalf("dry run during a rollout: %v", err)
	}
	if _, err := c.engine().AbortRollout(operator(), first.GetId(), "test over", false); err != nil {
		t.Fatal(err)
	}
	c.waitState(first.GetId(), stateAborted)
}

func TestDryRunIsTheExecutedPlan(t *testing.T) {
	c := newCluster(t, clusterOptions{web: 6, lb: true})
	// web-02 already runs the target, web-05 stays offline.
	c.byID["web-02"].set(func(a *fakeAgent) { a.image = newImage })
	c.startCP()
	var online []*fakeAgent
	for _, a := range append(slices.Clone(c.agents), c.lb) {
		if a.id != "web-05" {
			a.start()
			online = append(online, a)
		}
	}
	c.waitConnected(online...)
	c.putService(nil)
	s := strategy(2)
	s.Canary = 1
	req := &flotillav1.StartRolloutRequest{Service: serviceName, Image: newImage, Strategy: s, DryRun: true}
	dry, err := c.engine().StartRollout(operator(), req, "operator:at-1")
	if err != nil {
		t.Fatal(err)
	}
	if dry.GetId() != "" {
		t.Errorf("a dry run has an ID: %q", dry.GetId())
	}
	if list, _ := c.engine().ListRollouts(operator(), storeQuery(serviceName)); len(list) != 0 {
		t.Fatalf("a dry run stored %d rollouts", len(list))
	}
	wantExcluded := []*flotillav1.ExcludedHost{{AgentId: "web-02", Reason: "already at the target image"}, {AgentId: "web-05", Reason: "offline"}}
	if !protoSliceEqual(dry.GetExcluded(), wantExcluded) {
		t.Fatalf("excluded = %v, want %v", dry.GetExcluded(), wantExcluded)
	}
	wantBatches := [][]string{{"web-01"}, {"web-03", "web-04"}, {"web-06"}}
	if len(dry.GetBatches()) != len(wantBatches) {
		t.Fatalf("batches = %v", dry.GetBatches())
	}
	for i, b := range dry.GetBatches() {
		if !slices.Equal(b.GetAgentIds(), wantBatches[i]) {
			t.Fatalf("batch %d = %v, want %v", i, b.GetAgentIds(), wantBatches[i])
		}
	}
	req.DryRun = false
	real, err := c.engine().StartRollout(operator(), req, "operator:at-1")
	if err != nil {
		t.Fatal(err)
	}
	if !protoSliceEqual(real.GetBatches(), dry.GetBatches()) || !protoSliceEqual(real.GetExcluded(), dry.GetExcluded()) {
		t.Fatalf("started plan differs from the dry run:\n%v\n%v", real, dry)
	}
	done := c.waitState(real.GetId(), stateSucceeded, stateFailed)
	if done.GetState() != stateSucceeded || !protoSliceEqual(done.GetBatches(), dry.GetBatches()) {
		t.Fatalf("executed:\n%s", describe(done))
	}
	// The order the hosts were restarted in is the plan's.
	evs := c.history(real.GetId())
	var order []string
	for _, ev := range evs {
		if h := ev.GetHost(); h != nil && h.GetStep() == stepRestarting {
			order = append(order, h.GetAgentId())
		}
	}
	if want := []string{"web-01", "web-03", "web-04", "web-06"}; !sameSet(order[1:3], want[1:3]) || order[0] != want[0] || order[3] != want[3] {
		t.Fatalf("restart order %v, want the plan's %v", order, want)
	}
}

func protoSliceEqual[T proto.Message](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !proto.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

func storeQuery(service string) store.RolloutQuery { return store.RolloutQuery{Service: service} }

// TestWatchAfterSequence: a watcher that lost its stream re-attaches with
// the last sequence it received and gets exactly the events after it; a
// watcher that has every event of an ended rollout returns at once; a
// negative sequence is refused, naming the field.
func TestWatchAfterSequence(t *testing.T) {
	c := newCluster(t, clusterOptions{web: 2})
	c.start()
	c.putService(nil)
	r := c.waitState(c.startRollout(newImage, strategy(1)).GetId(), stateSucceeded, stateFailed, stateRolledBack)
	all := c.history(r.GetId())
	if len(all) < 4 {
		t.Fatalf("history has %d events, want at least 4", len(all))
	}
	watch := func(after int64) ([]int64, error) {
		ctx, cancel := context.WithTimeout(operator(), waitFor)
		defer cancel()
		var seqs []int64
		err := c.engine().WatchRolloutAfter(ctx, r.GetId(), after, func(ev *flotillav1.RolloutEvent) error {
			seqs = append(seqs, ev.GetSequence())
			return nil
		})
		return seqs, err
	}
	mid := all[len(all)/2].GetSequence()
	got, err := watch(mid)
	if err != nil {
		t.Fatalf("watch after %d: %v", mid, err)
	}
	var want []int64
	for _, ev := range all {
		if ev.GetSequence() > mid {
			want = append(want, ev.GetSequence())
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("watch after %d sent %v, want %v", mid, got, want)
	}
	last := all[len(all)-1].GetSequence()
	if got, err := watch(last); err != nil || len(got) != 0 {
		t.Fatalf("watch after the final event (%d) = %v, %v; want no event and a return", last, got, err)
	}
	if _, err := watch(-1); err == nil || !strings.Contains(err.Error(), "after_sequence") {
		t.Fatalf("watch after -1: %v, want an error naming after_sequence", err)
	}
}
