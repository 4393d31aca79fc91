package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"flotilla.dev/e2e/internal/fixture"
	"flotilla.dev/e2e/internal/grpcurl"
	"flotilla.dev/e2e/internal/rollouttest"
)

// spareAgents is the number of agents without an application besides the
// rollout's four (three application hosts and the load balancer), so that
// each replica holds about three agents.
const spareAgents = 5

// defaultLeaseTTL is store.lease_ttl when the configuration leaves it
// out, as the failover tests run the replicas.
const defaultLeaseTTL = 10 * time.Second

// takeoverSlack is how long past the lease's TTL the work of a dead
// replica may wait for another one (issue 13: within the lease + 5 s).
const takeoverSlack = 5 * time.Second

// failoverEnv is the rollout's fleet (three application hosts behind
// Nginx, a load balancer) plus spare agents, all given the addresses of
// three control-plane replicas on one PostgreSQL database.
type failoverEnv struct {
	*rolloutEnv
	set *replicaSet
	// spares are the agents without an application, by hostname.
	spares map[string]*fixture.Process
	// ttl is the replicas' store.lease_ttl.
	ttl time.Duration
}

// newFailoverEnv starts the replicas, the fleet and the spare agents, and
// defines the rollout's service. It skips (fails under FLOTILLA_E2E=1)
// without Docker, PostgreSQL, Nginx or the binaries.
func newFailoverEnv(t *testing.T) *failoverEnv {
	t.Helper()
	f := &failoverEnv{ttl: defaultLeaseTTL, spares: map[string]*fixture.Process{}}
	f.rolloutEnv = newRolloutEnvWith(t, func(t *testing.T, dir string) (grpcurl.Client, []string) {
		f.set = startReplicas(t, dir, replicaCount)
		return f.set.api(f.set.replicas[0]), f.set.addrs()
	})
	f.startSpares(t)
	f.ready(t)
	(&rolloutRun{env: f.rolloutEnv}).testPutService(t)
	return f
}

// startSpares starts the spare agents: each manages no container (a
// label nobody carries) and may pull from the local registry.
func (f *failoverEnv) startSpares(t *testing.T) {
	t.Helper()
	join := f.g.CreateJoinToken(t, "e2e spare agents", spareAgents)
	tokenFile := filepath.Join(f.dir, "secrets", "spare-join.token")
	fixture.WriteFile(t, tokenFile, join.Token+"\n", 0o600)
	for i := 1; i <= spareAgents; i++ {
		name := fmt.Sprintf("e2e-spare-%d", i)
		cfg := rollouttest.ControlPlaneYAML(f.cpAddrs, join.CACertSHA256) + fmt.Sprintf(spareAgentConfig,
			tokenFile, filepath.Join(f.dir, name), name, f.docker.RunID, f.registry)
		path := filepath.Join(f.dir, name+".yaml")
		fixture.WriteFile(t, path, cfg, 0o600)
		if i == 1 {
			t.Logf("agent configuration of %s:\n%s", name, cfg)
		}
		f.spares[name] = fixture.StartProcess(f.top, "agent "+name, fixture.Binary(t, "flotilla-agent"), nil, "-config", path)
	}
}

// spareAgentConfig follows the control_plane section of a spare agent's
// configuration.
const spareAgentConfig = `join_token_file: %[1]s
state_dir: %[2]s
hostname: %[3]s
heartbeat_interval: 1s
labels:
  role: spare
log:
  format: console
docker:
  managed_label: flotilla.e2e-spare=%[4]s
  allowed_registries: [%[5]s]
`

// agentCount is the number of agents of the environment.
func (f *failoverEnv) agentCount() int { return rolloutHosts + 1 + spareAgents }

// via is the fleet as rollouttest drives it, through one replica; point
// it at another before that one is broken.
func (f *failoverEnv) via(r *replica) *viaReplica {
	return &viaReplica{rolloutEnv: f.rolloutEnv, api: f.set.api(r)}
}

// viaReplica is the rollout environment with its API on one replica.
type viaReplica struct {
	*rolloutEnv
	api grpcurl.Client
}

// API is grpcurl against the chosen replica.
func (v *viaReplica) API() grpcurl.Client { return v.api }

// ready waits until every replica serves and every agent is connected,
// its stream held by a running replica.
func (f *failoverEnv) ready(t *testing.T) map[string]*replica {
	t.Helper()
	f.set.waitAllServing(t)
	var placed map[string]*replica
	fixture.Eventually(t, 60*time.Second, "every agent connected to a running replica", func() error {
		var err error
		placed, err = f.placement()
		return err
	})
	return placed
}

// placement maps every agent's ID to the running replica holding its
// stream, as a replica's ListAgents and the agents table show it; an
// agent not connected, or held by no running replica, is an error.
func (f *failoverEnv) placement() (map[string]*replica, error) {
	var api grpcurl.Client
	for _, r := range f.set.replicas {
		if !r.process().Exited() {
			api = f.apiOn(r)
			break
		}
	}
	agents, err := api.ListAgents("")
	if err != nil {
		return nil, err
	}
	if len(agents) != f.agentCount() {
		return nil, fmt.Errorf("%d agents listed, want %d", len(agents), f.agentCount())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	holders, err := f.set.streamHolders(ctx)
	if err != nil {
		return nil, err
	}
	placed := map[string]*replica{}
	for _, a := range agents {
		r := f.set.byHolder(holders[a.ID])
		if a.State != "AGENT_STATE_CONNECTED" || r == nil || r.process().Exited() {
			return nil, fmt.Errorf("%s is %s, stream holder %q", a.Hostname, a.State, holders[a.ID])
		}
		placed[a.ID] = r
	}
	return placed, nil
}

// api is grpcurl against a running replica, for calls that must not go to
// one about to be killed.
func (f *failoverEnv) apiOn(r *replica) grpcurl.Client { return f.set.api(r) }

// names are the hostnames of agents, sorted, for the log.
func (f *failoverEnv) names(t *testing.T, ids []string) []string {
	t.Helper()
	byID := f.hostnames(t)
	var out []string
	for _, id := range ids {
		out = append(out, byID[id])
	}
	sort.Strings(out)
	return out
}

// hostnames maps every agent's ID to its hostname.
func (f *failoverEnv) hostnames(t *testing.T) map[string]string {
	t.Helper()
	agents, err := f.apiOn(f.set.other(t)).ListAgents("")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, a := range agents {
		out[a.ID] = a.Hostname
	}
	return out
}

// describePlacement renders which replica holds which agents.
func (f *failoverEnv) describePlacement(t *testing.T, placed map[string]*replica) string {
	t.Helper()
	var parts []string
	for _, r := range f.set.replicas {
		var ids []string
		for id, holder := range placed {
			if holder == r {
				ids = append(ids, id)
			}
		}
		parts = append(parts, fmt.Sprintf("%s: %d %v", r.name, len(ids), f.names(t, ids)))
	}
	return strings.Join(parts, "; ")
}

// driver waits until the rollout's lease is held by a running replica and
// returns it with the lease.
func (f *failoverEnv) driver(t *testing.T, rolloutID string) (*replica, lease) {
	t.Helper()
	var (
		r *replica
		l lease
	)
	fixture.Eventually(t, 30*time.Second, "a replica to hold rollout "+rolloutID, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		got, ok, err := f.set.lease(ctx, "rollout/"+rolloutID)
		if err != nil || !ok {
			return fmt.Errorf("lease rollout/%s: %v (found %v)", rolloutID, err, ok)
		}
		if r = f.set.byHolder(got.Holder); r == nil || got.Expired {
			return fmt.Errorf("lease rollout/%s: %+v, held by no running replica", rolloutID, got)
		}
		l = got
		return nil
	})
	return r, l
}

// waitTakeover waits until another running replica holds the lease that
// before describes, with a newer fencing token, and returns it and the
// time from since.
func (f *failoverEnv) waitTakeover(t *testing.T, name string, before lease, since time.Time) (*replica, lease, time.Duration) {
	t.Helper()
	var (
		r *replica
		l lease
	)
	fixture.Eventually(t, f.ttl+takeoverSlack+30*time.Second, "another replica to take "+name+" over", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		got, ok, err := f.set.lease(ctx, name)
		if err != nil || !ok {
			return fmt.Errorf("lease %s: %v (found %v)", name, err, ok)
		}
		if got.Holder == before.Holder || got.Expired {
			return fmt.Errorf("lease %s: %+v", name, got)
		}
		if r = f.set.byHolder(got.Holder); r == nil {
			return fmt.Errorf("lease %s held by %s, no running replica", name, got.Holder)
		}
		l = got
		return nil
	})
	took := time.Since(since)
	if l.Token <= before.Token {
		t.Errorf("lease %s moved from %s (token %d) to %s with token %d: the fencing token must grow", name, before.Holder, before.Token, l.Holder, l.Token)
	}
	return r, l, took
}

// watchOn makes sure the run is followed, and the fleet's API called, on a
// replica other than not (whose death would end the stream), and returns
// it.
func (f *failoverEnv) watchOn(t *testing.T, run *rollouttest.Run, via *viaReplica, current, not *replica) *replica {
	t.Helper()
	w := current
	if current == not {
		w = f.set.other(t, not)
		run.Watch = f.apiOn(w).WatchRollout(t, run.ID, rollouttest.Timeout)
	}
	via.api = f.apiOn(w)
	return w
}

// restartIfDown starts the replica again if its process has exited, as
// systemd's Restart= does, and waits until the fleet is whole again.
func (f *failoverEnv) restartIfDown(t *testing.T, r *replica) {
	t.Helper()
	if !r.process().Exited() {
		return
	}
	began := time.Now()
	f.set.start(t, r)
	placed := f.ready(t)
	t.Logf("%s started again and the fleet whole %s later: %s", r.name, time.Since(began).Round(100*time.Millisecond), f.describePlacement(t, placed))
}

// checkForwardOnce wants every host to have gone through the forward steps
// exactly once, in order: no step was driven twice across the takeover.
func checkForwardOnce(t *testing.T, f rollouttest.Fleet, res rollouttest.Result) {
	t.Helper()
	want := []string{"HOST_STEP_DRAINING", "HOST_STEP_RESTARTING", "HOST_STEP_HEALTH_CHECK", "HOST_STEP_UNDRAINING", "HOST_STEP_DONE"}
	for _, h := range f.AppHosts() {
		if got := rollouttest.HostSteps(res.Events, h.AgentID, false); !slices.Equal(got, want) {
			t.Errorf("%s went through %v, want %v once each", h.Name, got, want)
		}
	}
}

// firstEventAfter is the first rollout event stamped after at.
func firstEventAfter(events []grpcurl.RolloutEvent, at time.Time) (grpcurl.RolloutEvent, bool) {
	for _, e := range events {
		if e.Event.At.After(at) {
			return e, true
		}
	}
	return grpcurl.RolloutEvent{}, false
}

// describeEvent names what a rollout event is about.
func describeEvent(e grpcurl.RolloutEvent) string {
	switch {
	case e.Event.Host != nil:
		return "host " + e.Event.Host.AgentID + " " + e.Event.Host.Step
	case e.Event.Batch != nil:
		return fmt.Sprintf("batch %d", e.Event.Batch.Index)
	default:
		return "rollout"
	}
}
