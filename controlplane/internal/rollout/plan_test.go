package rollout

import (
	"fmt"
	"slices"
	"testing"

	flotillav1 "flotilla.dev/gen/flotilla/v1"
)

func hosts(n int) []Candidate {
	out := make([]Candidate, n)
	for i := range out {
		// Given in reverse: the plan sorts by agent ID.
		out[i] = Candidate{AgentID: fmt.Sprintf("h-%02d", n-i), Online: true, Reported: true, HasContainer: true,
			Image: "app:1", Address: fmt.Sprintf("10.0.0.%d", n-i)}
	}
	return out
}

func batchIDs(p Plan) [][]string {
	var out [][]string
	for _, b := range p.Batches {
		out = append(out, b.GetAgentIds())
	}
	return out
}

func TestMakePlanBatches(t *testing.T) {
	size := func(n int32) *flotillav1.RolloutStrategy {
		return withDefaults(&flotillav1.RolloutStrategy{Batch: &flotillav1.RolloutStrategy_BatchSize{BatchSize: n}})
	}
	percent := func(n int32) *flotillav1.RolloutStrategy {
		return withDefaults(&flotillav1.RolloutStrategy{Batch: &flotillav1.RolloutStrategy_BatchPercent{BatchPercent: n}})
	}
	withCanary := func(s *flotillav1.RolloutStrategy, c int32) *flotillav1.RolloutStrategy { s.Canary = c; return s }
	tests := []struct {
		name     string
		n        int
		strategy *flotillav1.RolloutStrategy
		want     []int // batch sizes
		canary   bool
	}{
		{"default one at a time", 3, withDefaults(nil), []int{1, 1, 1}, false},
		{"size 2", 5, size(2), []int{2, 2, 1}, false},
		{"percent 10 of 25 rounds up", 25, percent(10), []int{3, 3, 3, 3, 3, 3, 3, 3, 1}, false},
		{"percent 100", 4, percent(100), []int{4}, false},
		{"canary then size", 5, withCanary(size(2), 1), []int{1, 2, 2}, true},
		{"canary larger than the fleet", 2, withCanary(size(2), 5), []int{2}, true},
		{"percent counts the canary hosts too", 10, withCanary(percent(50), 2), []int{2, 5, 3}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := MakePlan(PlanInput{Image: "app:2", Container: "app", Strategy: tt.strategy, Hosts: hosts(tt.n)})
			var sizes []int
			var all []string
			for i, b := range p.Batches {
				sizes = append(sizes, len(b.GetAgentIds()))
				all = append(all, b.GetAgentIds()...)
				if b.GetIndex() != int32(i) || b.GetCanary() != (tt.canary && i == 0) {
					t.Errorf("batch %d = %v", i, b)
				}
			}
			if !slices.Equal(sizes, tt.want) {
				t.Fatalf("batch sizes %v, want %v", sizes, tt.want)
			}
			if !slices.IsSorted(all) || len(all) != tt.n || len(p.Hosts) != tt.n {
				t.Fatalf("hosts %v not in agent ID order", all)
			}
			for _, h := range p.Hosts {
				if !slices.Contains(p.Batches[h.Batch].GetAgentIds(), h.AgentID) {
					t.Fatalf("planned host %+v is not in its batch", h)
				}
			}
		})
	}
}

func TestMakePlanExclusions(t *testing.T) {
	in := hosts(6)
	byID := map[string]*Candidate{}
	for i := range in {
		byID[in[i].AgentID] = &in[i]
	}
	byID["h-01"].Image = "app:2"         // already there
	byID["h-02"].Online = false          // offline
	byID["h-03"].HasContainer = false    // no such container
	byID["h-04"].Address = ""            // nothing to drain
	byID["h-05"].Address = "not an@addr" // invalid upstream server
	lb := &flotillav1.LoadBalancer{Selector: "role=lb", Upstream: "app", ServerPort: 8080}
	plan := func(policy flotillav1.OfflinePolicy) Plan {
		s := withDefaults(nil)
		s.OfflineHosts = policy
		return MakePlan(PlanInput{Image: "app:2", Container: "app", Strategy: s, LoadBalancer: lb, Hosts: in})
	}
	p := plan(flotillav1.OfflinePolicy_OFFLINE_POLICY_SKIP)
	want := map[string]string{
		"h-01": ReasonAtTarget, "h-02": ReasonOffline, "h-03": `container "app" not reported by the agent`,
		"h-04": `no address for the load balancer (no "address" label and no peer address)`,
	}
	if len(p.Excluded) != 5 {
		t.Fatalf("excluded = %v", p.Excluded)
	}
	for _, x := range p.Excluded {
		if w, ok := want[x.GetAgentId()]; ok && x.GetReason() != w {
			t.Errorf("%s excluded for %q, want %q", x.GetAgentId(), x.GetReason(), w)
		}
	}
	if len(p.Hosts) != 1 || p.Hosts[0].AgentID != "h-06" || p.Hosts[0].Server != "10.0.0.6:8080" || p.Hosts[0].ObservedImage != "app:1" {
		t.Fatalf("planned = %+v", p.Hosts)
	}
	// WAIT keeps the offline host (marked); FAIL reports it.
	if p := plan(flotillav1.OfflinePolicy_OFFLINE_POLICY_WAIT); len(p.Hosts) != 2 || !p.Hosts[0].Offline || !slices.Equal(p.Offline, []string{"h-02"}) {
		t.Fatalf("WAIT plan = %+v", p)
	}
	if p := plan(flotillav1.OfflinePolicy_OFFLINE_POLICY_FAIL); len(p.Hosts) != 1 || !slices.Equal(p.Offline, []string{"h-02"}) {
		t.Fatalf("FAIL plan = %+v", p)
	}
	// Deterministic: the same input gives the same plan.
	if a, b := batchIDs(plan(flotillav1.OfflinePolicy_OFFLINE_POLICY_WAIT)), batchIDs(plan(flotillav1.OfflinePolicy_OFFLINE_POLICY_WAIT)); !slices.EqualFunc(a, b, slices.Equal) {
		t.Fatalf("plans differ: %v %v", a, b)
	}
}

func TestCommandIDs(t *testing.T) {
	for _, tt := range []struct {
		step, lb string
		rb       bool
		want     string
	}{
		{"pull", "", false, "ro-1.web-1.pull"},
		{"restart", "", false, "ro-1.web-1.restart"},
		{"restart", "", true, "ro-1.web-1.restart.rb"},
		{"drain", "lb-1", false, "ro-1.web-1.drain.lb-1"},
		{"undrain", "lb-1", true, "ro-1.web-1.undrain.lb-1.rb"},
	} {
		if got := commandID("ro-1", "web-1", tt.step, tt.lb, tt.rb); got != tt.want {
			t.Errorf("commandID(%s, %s, %v) = %q, want %q", tt.step, tt.lb, tt.rb, got, tt.want)
		}
	}
}
