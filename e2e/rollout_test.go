package e2e

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"flotilla.dev/e2e/internal/fixture"
	"flotilla.dev/e2e/internal/grpcurl"
	"flotilla.dev/e2e/internal/rollouttest"
)

// TestRolloutEndToEnd defines a service with the real grpcurl and rolls it
// out over three hosts behind Nginx, each an agent of its own on the one
// Docker engine, while requests flow through Nginx: first v1 → v2, which
// must succeed without a failed request, then a release whose health
// check fails, which the canary must catch and roll back on its own; then
// both again through the flotilla command, checking its exit codes.
func TestRolloutEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test; run without -short")
	}
	env := newRolloutEnv(t)
	r := &rolloutRun{env: env}
	steps := []struct {
		name string
		run  func(*testing.T)
	}{
		{"put service", r.testPutService},
		{"dry run", r.testDryRun},
		// The scenarios shared with the fleet of containers (package fleet).
		{"v1 to v2 under load", func(t *testing.T) { r.good = rollouttest.ToV2(t, env, 1).Final }},
		{"unhealthy release rolled back by the canary", func(t *testing.T) {
			r.bad = rollouttest.UnhealthyCanary(t, env, "v2", 1).Final
		}},
		{"history", r.testHistory},
		{"the flotilla command: exit 0 live, 11 rolled back", r.testCLI},
	}
	for _, s := range steps {
		// Each step builds on the fleet the previous ones left.
		if !t.Run(s.name, s.run) {
			return
		}
	}
}

// rolloutRun is the state the steps pass on.
type rolloutRun struct {
	env *rolloutEnv
	// The rollouts started, oldest first.
	good, bad grpcurl.Rollout
}

// testPutService defines the service: its container, hosts, health URL,
// load balancer and default strategy.
func (r *rolloutRun) testPutService(t *testing.T) {
	env := r.env
	body := fmt.Sprintf(`{"service": {"name": %q, "container": %q, "selector": "env=e2e,role=web", "health_url": "http://127.0.0.1:%d/health",
  "load_balancer": {"selector": "role=lb", "upstream": %q, "server_port": %d, "address_label": "address"},
  "default_strategy": {"batch_size": 1, "canary": 1, "min_healthy_time": "2s", "healthy_deadline": "30s", "auto_rollback": true}}}`,
		rollouttest.Service, rolloutContainer, env.port, rollouttest.Upstream, env.port)
	var resp struct {
		Service grpcurl.Service `json:"service"`
	}
	env.g.RPC(t, grpcurl.RolloutService+"PutService", body, &resp)
	if resp.Service.Name != rollouttest.Service || resp.Service.Container != rolloutContainer || resp.Service.CurrentImage != "" {
		t.Fatalf("PutService answered %s", grpcurl.Dump(resp))
	}
}

// testDryRun asks for the plan of v1 → v2 and checks it: the first host
// alone as the canary, then one host per batch, nobody left out.
func (r *rolloutRun) testDryRun(t *testing.T) {
	env := r.env
	var resp grpcurl.RolloutResponse
	env.g.RPC(t, grpcurl.RolloutService+"StartRollout", fmt.Sprintf(`{"service": %q, "image": %q, "dry_run": true}`, rollouttest.Service, env.images["v2"]), &resp)
	p := resp.Rollout
	if p.ID != "" || p.State != "ROLLOUT_STATE_PREPARING" || !strings.Contains(p.Message, "dry run") {
		t.Errorf("dry run answered id %q state %s message %q", p.ID, p.State, p.Message)
	}
	if len(p.Excluded) != 0 {
		t.Errorf("the plan leaves out %+v", p.Excluded)
	}
	var got [][]string
	for i, b := range p.Batches {
		got = append(got, b.AgentIDs)
		if b.Canary != (i == 0) || b.Index != i {
			t.Errorf("batch %d: index %d canary %v", i, b.Index, b.Canary)
		}
	}
	var want [][]string
	for _, h := range env.hosts {
		want = append(want, []string{h.agentID})
	}
	if !slices.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("batches %v, want %v (the canary first, then one host per batch)", got, want)
	}
	for _, h := range p.Hosts {
		if h.Step != "HOST_STEP_PENDING" {
			t.Errorf("host %s is %s in a dry run", h.AgentID, h.Step)
		}
	}
	// Nothing was started.
	var list grpcurl.ListRolloutsResponse
	env.g.RPC(t, grpcurl.RolloutService+"ListRollouts", fmt.Sprintf(`{"service": %q}`, rollouttest.Service), &list)
	if len(list.Rollouts) != 0 {
		t.Errorf("a dry run stored rollouts: %s", grpcurl.Dump(list))
	}
}

// testHistory asks to roll the service back and reads its history. The
// failed release was rolled back automatically, so the revision before it
// is v2, which every host runs: there is nothing to roll back.
func (r *rolloutRun) testHistory(t *testing.T) {
	env := r.env
	out, err := env.g.Invoke(t, grpcurl.RolloutService+"RollbackService", fmt.Sprintf(`{"service": %q, "reason": "undo v3"}`, rollouttest.Service))
	if err == nil || !strings.Contains(out, "FailedPrecondition") || !strings.Contains(out, "already at the target image") {
		t.Errorf("RollbackService after an automatic rollback: %v, want FailedPrecondition saying every host runs the target already", err)
	}
	var list grpcurl.ListRolloutsResponse
	env.g.RPC(t, grpcurl.RolloutService+"ListRollouts", fmt.Sprintf(`{"service": %q}`, rollouttest.Service), &list)
	var got []string
	for _, ro := range list.Rollouts {
		got = append(got, fmt.Sprintf("%s %s %s", ro.ID, ro.State, ro.Image))
	}
	want := []string{
		fmt.Sprintf("%s ROLLOUT_STATE_ROLLED_BACK %s", r.bad.ID, env.images[fixture.VersionUnhealthy]),
		fmt.Sprintf("%s ROLLOUT_STATE_SUCCEEDED %s", r.good.ID, env.images["v2"]),
	}
	if !slices.Equal(got, want) {
		t.Errorf("ListRollouts = %q, want newest first %q", got, want)
	}
	var svc struct {
		Service grpcurl.Service `json:"service"`
	}
	env.g.RPC(t, grpcurl.RolloutService+"GetService", fmt.Sprintf(`{"name": %q}`, rollouttest.Service), &svc)
	if svc.Service.CurrentImage != env.images["v2"] {
		t.Errorf("the service's current image is %q, want %s", svc.Service.CurrentImage, env.images["v2"])
	}
	if file := env.nginx.ReadUpstreamFile(t, rollouttest.Upstream); strings.Contains(file, "down") {
		t.Errorf("a server is still drained at the end:\n%s", file)
	}
}
