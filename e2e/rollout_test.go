package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
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

// rolloutLoadWorkers is how many clients send requests through nginx
// during a rollout.
const rolloutLoadWorkers = 4

// TestRolloutEndToEnd defines a service with the real grpcurl and rolls it
// out over three hosts behind Nginx, each an agent of its own on the one
// Docker engine, while requests flow through Nginx: first v1 → v2, which
// must succeed without a failed request, then a release whose health
// check fails, which the canary must catch and roll back on its own.
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
		{"v1 to v2 under load", r.testRolloutV2},
		{"unhealthy release rolled back by the canary", r.testRolloutUnhealthy},
		{"history", r.testHistory},
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
	good, bad rolloutJSON
}

// testPutService defines the service: its container, hosts, health URL,
// load balancer and default strategy.
func (r *rolloutRun) testPutService(t *testing.T) {
	env := r.env
	body := fmt.Sprintf(`{"service": {"name": %q, "container": %q, "selector": "env=e2e,role=web", "health_url": "http://127.0.0.1:%d/health",
  "load_balancer": {"selector": "role=lb", "upstream": %q, "server_port": %d, "address_label": "address"},
  "default_strategy": {"batch_size": 1, "canary": 1, "min_healthy_time": "2s", "healthy_deadline": "30s", "auto_rollback": true}}}`,
		rolloutServiceName, rolloutContainer, env.port, rolloutUpstream, env.port)
	var resp struct {
		Service serviceJSON `json:"service"`
	}
	env.g.rpcRollout(t, "PutService", body, &resp)
	if resp.Service.Name != rolloutServiceName || resp.Service.Container != rolloutContainer || resp.Service.CurrentImage != "" {
		t.Fatalf("PutService answered %s", dump(resp))
	}
}

// testDryRun asks for the plan of v1 → v2 and checks it: the first host
// alone as the canary, then one host per batch, nobody left out.
func (r *rolloutRun) testDryRun(t *testing.T) {
	env := r.env
	var resp rolloutResponseJSON
	env.g.rpcRollout(t, "StartRollout", fmt.Sprintf(`{"service": %q, "image": %q, "dry_run": true}`, rolloutServiceName, env.images["v2"]), &resp)
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
	var list listRolloutsJSON
	env.g.rpcRollout(t, "ListRollouts", fmt.Sprintf(`{"service": %q}`, rolloutServiceName), &list)
	if len(list.Rollouts) != 0 {
		t.Errorf("a dry run stored rollouts: %s", dump(list))
	}
}

// testRolloutV2 rolls v2 out while clients send requests through nginx.
func (r *rolloutRun) testRolloutV2(t *testing.T) {
	env := r.env
	res := env.rollout(t, fmt.Sprintf(`{"service": %q, "image": %q, "reason": "release v2"}`, rolloutServiceName, env.images["v2"]))
	r.good = res.final
	if res.final.State != "ROLLOUT_STATE_SUCCEEDED" {
		t.Fatalf("rollout to v2 ended %s: %s", res.final.State, dump(res.final))
	}
	checkNoFailures(t, "the rollout to v2", res.load)
	if res.load.ByBody["v1"] == 0 || res.load.ByBody["v2"] == 0 || len(res.load.ByBody) != 2 {
		t.Errorf("answers %v: want v1 before and v2 after the hosts' restarts, nothing else", res.load.ByBody)
	}
	wantSteps := []string{"HOST_STEP_DRAINING", "HOST_STEP_RESTARTING", "HOST_STEP_HEALTH_CHECK", "HOST_STEP_UNDRAINING", "HOST_STEP_DONE"}
	for _, h := range env.hosts {
		if got := hostSteps(res.events, h.agentID, false); !slices.Equal(got, wantSteps) {
			t.Errorf("%s went through %v, want %v", h.name, got, wantSteps)
		}
		if !res.drained[h.server(env.port)] {
			t.Errorf("the upstream file never showed %s drained", h.server(env.port))
		}
		env.checkRuns(t, h, env.images["v2"], "v2")
	}
	if res.maxDown != 1 {
		t.Errorf("at most %d servers were drained at once, want 1 (batch_size 1)", res.maxDown)
	}
	for _, rh := range res.final.Hosts {
		if rh.Step != "HOST_STEP_DONE" || rh.PreviousImage != env.images["v1"] {
			t.Errorf("host %s: step %s, previous image %s", rh.AgentID, rh.Step, rh.PreviousImage)
		}
	}
}

// testRolloutUnhealthy rolls out a release whose /health answers 503: the
// canary fails its health gate, is rolled back to v2, and no other host
// is touched. Traffic never reaches the broken release.
func (r *rolloutRun) testRolloutUnhealthy(t *testing.T) {
	env := r.env
	canary, rest := env.hosts[0], env.hosts[1:]
	ids := map[string]string{}
	for _, h := range rest {
		ids[h.name] = env.docker.Inspect(t, h.container).ID
	}
	// A shorter healthy_deadline than the service's: the strategy of a
	// start replaces the default as a whole.
	res := env.rollout(t, fmt.Sprintf(`{"service": %q, "image": %q, "reason": "release v3",
  "strategy": {"batch_size": 1, "canary": 1, "min_healthy_time": "2s", "healthy_deadline": "10s", "auto_rollback": true}}`,
		rolloutServiceName, env.images[fixture.VersionUnhealthy]))
	r.bad = res.final
	if res.final.State != "ROLLOUT_STATE_ROLLED_BACK" {
		t.Fatalf("rollout to the unhealthy release ended %s: %s", res.final.State, dump(res.final))
	}
	t.Logf("the rollout's message: %s", res.final.Message)
	checkNoFailures(t, "the rollout to the unhealthy release", res.load)
	if res.load.ByBody[fixture.VersionUnhealthy] > 0 || res.load.ByBody["v2"] == 0 || len(res.load.ByBody) != 1 {
		t.Errorf("answers %v: want v2 only (the canary stays drained while it runs the broken release)", res.load.ByBody)
	}
	steps := hostSteps(res.events, canary.agentID, false)
	if !slices.Equal(steps, []string{"HOST_STEP_DRAINING", "HOST_STEP_RESTARTING", "HOST_STEP_HEALTH_CHECK", "HOST_STEP_FAILED"}) {
		t.Errorf("the canary went through %v, want drain, restart, health check, failed", steps)
	}
	if rb := hostSteps(res.events, canary.agentID, true); len(rb) == 0 || rb[len(rb)-1] != "HOST_STEP_ROLLED_BACK" || !slices.Contains(rb, "HOST_STEP_UNDRAINING") {
		t.Errorf("the canary's rollback went through %v, want it to end undrained and ROLLED_BACK", rb)
	}
	for _, rh := range res.final.Hosts {
		want := "HOST_STEP_SKIPPED"
		if rh.AgentID == canary.agentID {
			want = "HOST_STEP_ROLLED_BACK"
			if !strings.Contains(rh.Message, "health") && !strings.Contains(res.final.Message, "health") {
				t.Errorf("neither the canary's message %q nor the rollout's %q says the health gate failed", rh.Message, res.final.Message)
			}
		}
		if rh.Step != want {
			t.Errorf("host %s is %s, want %s: %s", rh.AgentID, rh.Step, want, rh.Message)
		}
	}
	for _, h := range rest {
		if got := hostSteps(res.events, h.agentID, false); len(got) > 0 && got[len(got)-1] != "HOST_STEP_SKIPPED" || slices.Contains(got, "HOST_STEP_RESTARTING") {
			t.Errorf("%s went through %v; it should never have been restarted", h.name, got)
		}
		if id := env.docker.Inspect(t, h.container).ID; id != ids[h.name] {
			t.Errorf("%s's container was re-created (%s, was %s)", h.name, id, ids[h.name])
		}
		if res.drained[h.server(env.port)] {
			t.Errorf("%s was drained", h.name)
		}
	}
	if !res.drained[canary.server(env.port)] {
		t.Errorf("the upstream file never showed the canary %s drained", canary.server(env.port))
	}
	for _, h := range env.hosts {
		env.checkRuns(t, h, env.images["v2"], "v2")
	}
}

// testHistory asks to roll the service back and reads its history. The
// failed release was rolled back automatically, so the revision before it
// is v2, which every host runs: there is nothing to roll back.
func (r *rolloutRun) testHistory(t *testing.T) {
	env := r.env
	out, err := env.g.invokeRollout(t, "RollbackService", fmt.Sprintf(`{"service": %q, "reason": "undo v3"}`, rolloutServiceName))
	if err == nil || !strings.Contains(out, "FailedPrecondition") || !strings.Contains(out, "already at the target image") {
		t.Errorf("RollbackService after an automatic rollback: %v, want FailedPrecondition saying every host runs the target already", err)
	}
	var list listRolloutsJSON
	env.g.rpcRollout(t, "ListRollouts", fmt.Sprintf(`{"service": %q}`, rolloutServiceName), &list)
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
		Service serviceJSON `json:"service"`
	}
	env.g.rpcRollout(t, "GetService", fmt.Sprintf(`{"name": %q}`, rolloutServiceName), &svc)
	if svc.Service.CurrentImage != env.images["v2"] {
		t.Errorf("the service's current image is %q, want %s", svc.Service.CurrentImage, env.images["v2"])
	}
	if file := env.nginx.ReadUpstreamFile(t, rolloutUpstream); strings.Contains(file, "down") {
		t.Errorf("a server is still drained at the end:\n%s", file)
	}
}

// rolloutResult is what one rollout did, as the API and the world saw it.
type rolloutResult struct {
	final  rolloutJSON
	events []rolloutEventJSON
	load   fixture.LoadReport
	// drained are the servers the upstream file showed "down" at some
	// point; maxDown is the most shown down at once.
	drained map[string]bool
	maxDown int
}

// rollout starts a rollout while clients send requests through nginx,
// follows it with WatchRollout to its end and reads it back. It logs the
// figures: requests, failures, durations of the rollout and of each host.
func (env *rolloutEnv) rollout(t *testing.T, body string) rolloutResult {
	t.Helper()
	load := fixture.StartLoad(t, env.nginx.URL(rolloutUpstream), rolloutLoadWorkers, rolloutTimeout)
	upstream := env.sampleUpstream(t)
	began := time.Now()
	var started rolloutResponseJSON
	env.g.rpcRollout(t, "StartRollout", body, &started)
	if started.Rollout.ID == "" || started.Rollout.State != "ROLLOUT_STATE_PREPARING" {
		t.Fatalf("StartRollout answered %s", dump(started))
	}
	w := env.g.watchRollout(t, started.Rollout.ID, rolloutTimeout)
	events := rolloutEvents(t, w)
	took := time.Since(began)
	drained, maxDown := upstream.stop()
	report := load.Stop()
	t.Logf("WatchRollout printed %d events; the first as printed:\n%s\nall of them, one a line:\n%s",
		len(events), firstMessage(w.out.String()), eventLines(events, began))

	var resp rolloutResponseJSON
	env.g.rpcRollout(t, "GetRollout", fmt.Sprintf(`{"rollout_id": %q}`, started.Rollout.ID), &resp)
	final := resp.Rollout
	t.Logf("rollout %s to %s: %s in %s (created %s, finished %s); load through nginx: %d requests, %d failed, answers %v",
		final.ID, final.Image, final.State, took.Round(time.Millisecond), final.CreatedAt.Format(time.TimeOnly),
		final.FinishedAt.Format(time.TimeOnly), report.Requests, len(report.Failures), report.ByBody)
	for _, h := range env.hosts {
		t.Logf("  %s (%s): %s", h.name, h.agentID, stepTimeline(events, h.agentID))
	}
	return rolloutResult{final: final, events: events, load: report, drained: drained, maxDown: maxDown}
}

// checkRuns checks, through Docker and HTTP, that a host's container runs
// image and answers body.
func (env *rolloutEnv) checkRuns(t *testing.T, h *appHost, image, body string) {
	t.Helper()
	c := env.docker.Inspect(t, h.container)
	if c.Config.Image != image || c.State == nil || !c.State.Running {
		t.Errorf("%s's container %s runs %s (running %v), want %s", h.name, h.container, c.Config.Image, c.State != nil && c.State.Running, image)
	}
	if got, err := fixture.Get(h.url(env.port)); err != nil || got != body {
		t.Errorf("GET %s = %q, %v; want %q", h.url(env.port), got, err, body)
	}
}

// checkNoFailures wants no failed request through nginx.
func checkNoFailures(t *testing.T, during string, r fixture.LoadReport) {
	t.Helper()
	if len(r.Failures) > 0 || r.Requests == 0 {
		t.Errorf("load during %s: %d requests, %d failed: %v", during, r.Requests, len(r.Failures), r.Failures[:min(5, len(r.Failures))])
	}
}

// firstMessage is the first JSON message of a stream's output, as printed.
func firstMessage(out string) string {
	var first json.RawMessage
	if err := json.NewDecoder(strings.NewReader(out)).Decode(&first); err != nil {
		return fmt.Sprintf("(no message: %v)", err)
	}
	return string(first)
}

// eventLines renders a rollout's events one a line, timed from began:
// "+1.2s #5 host e2e-web-1-… DRAINING: draining 127.0.0.1:8080 …".
func eventLines(events []rolloutEventJSON, began time.Time) string {
	var b strings.Builder
	for _, e := range events {
		ev := e.Event
		fmt.Fprintf(&b, "  +%-6s #%-3s ", ev.At.Sub(began).Round(100*time.Millisecond), ev.Sequence)
		switch {
		case ev.State != nil:
			fmt.Fprintf(&b, "rollout %s: %s", strings.TrimPrefix(ev.State.State, "ROLLOUT_STATE_"), ev.State.Message)
		case ev.Batch != nil:
			fmt.Fprintf(&b, "batch %d started=%v finished=%v: %s", ev.Batch.Index, ev.Batch.Started, ev.Batch.Finished, ev.Batch.Message)
		case ev.Host != nil:
			rb := ""
			if ev.Host.RollingBack {
				rb = " (rollback)"
			}
			fmt.Fprintf(&b, "host %s %s%s: %s", ev.Host.AgentID, strings.TrimPrefix(ev.Host.Step, "HOST_STEP_"), rb, ev.Host.Message)
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// hostSteps are the steps a host went through, in order, in the forward
// pass or in its rollback.
func hostSteps(events []rolloutEventJSON, agentID string, rollingBack bool) []string {
	var out []string
	for _, e := range events {
		if h := e.Event.Host; h != nil && h.AgentID == agentID && h.RollingBack == rollingBack {
			out = append(out, h.Step)
		}
	}
	return out
}

// stepTimeline renders a host's steps with how long each lasted, e.g.
// "DRAINING 0.2s → RESTARTING 2.1s → … → DONE (total 5.4s)".
func stepTimeline(events []rolloutEventJSON, agentID string) string {
	var parts []string
	var first, prev time.Time
	for _, e := range events {
		h := e.Event.Host
		if h == nil || h.AgentID != agentID {
			continue
		}
		if !prev.IsZero() {
			parts[len(parts)-1] += " " + e.Event.At.Sub(prev).Round(100*time.Millisecond).String()
		} else {
			first = e.Event.At
		}
		step := strings.TrimPrefix(h.Step, "HOST_STEP_")
		if h.RollingBack {
			step = "rollback:" + step
		}
		parts = append(parts, step)
		prev = e.Event.At
	}
	if len(parts) == 0 {
		return "untouched"
	}
	return fmt.Sprintf("%s (total %s)", strings.Join(parts, " → "), prev.Sub(first).Round(100*time.Millisecond))
}

// upstreamSampler reads the upstream file every few milliseconds during a
// rollout and records which servers it shows drained.
type upstreamSampler struct {
	done    chan struct{}
	stopped chan struct{}
	drained map[string]bool
	maxDown int
}

var downServer = regexp.MustCompile(`server (\S+)[^;]*\bdown;`)

func (env *rolloutEnv) sampleUpstream(t *testing.T) *upstreamSampler {
	t.Helper()
	s := &upstreamSampler{done: make(chan struct{}), stopped: make(chan struct{}), drained: map[string]bool{}}
	file := env.nginx.UpstreamFile(rolloutUpstream)
	go func() {
		defer close(s.stopped)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-s.done:
				return
			case <-tick.C:
			}
			b, err := readFile(file)
			if err != nil {
				continue // replaced meanwhile
			}
			down := downServer.FindAllStringSubmatch(b, -1)
			s.maxDown = max(s.maxDown, len(down))
			for _, m := range down {
				s.drained[m[1]] = true
			}
		}
	}()
	t.Cleanup(func() { s.stop() })
	return s
}

// stop stops sampling and returns what was seen.
func (s *upstreamSampler) stop() (map[string]bool, int) {
	select {
	case <-s.done:
	default:
		close(s.done)
	}
	<-s.stopped
	return s.drained, s.maxDown
}

func readFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	return string(b), err
}
