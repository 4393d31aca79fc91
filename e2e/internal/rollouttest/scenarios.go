package rollouttest

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"flotilla.dev/e2e/internal/fixture"
)

// forwardSteps are the steps of a host that a rollout moved to its new
// release.
var forwardSteps = []string{"HOST_STEP_DRAINING", "HOST_STEP_RESTARTING", "HOST_STEP_HEALTH_CHECK", "HOST_STEP_UNDRAINING", "HOST_STEP_DONE"}

// ToV2 rolls v2 out over hosts running v1, in the service's default
// strategy (a canary of one, then batches of at most batchSize), while
// clients send requests through Nginx: it must succeed without a failed
// request, each host drained, restarted once on v2, health-checked and
// put back, never more than batchSize of them drained at once.
func ToV2(t *testing.T, f Fleet, batchSize int) Result {
	images := f.Images()
	res := Start(t, f, fmt.Sprintf(`{"service": %q, "image": %q, "reason": "release v2"}`, Service, images["v2"]), LoadWorkers).FinishRecorded(t)
	if res.Final.State != "ROLLOUT_STATE_SUCCEEDED" {
		t.Fatalf("rollout to v2 ended %s: %s", res.Final.State, res.Final.Message)
	}
	checkBatches(t, f, res, batchSize)
	CheckNoFailures(t, "the rollout to v2", res.Load)
	if res.Load.ByBody["v1"] == 0 || res.Load.ByBody["v2"] == 0 || len(res.Load.ByBody) != 2 {
		t.Errorf("answers %v: want v1 before and v2 after the hosts' restarts, nothing else", res.Load.ByBody)
	}
	for _, h := range f.AppHosts() {
		if got := HostSteps(res.Events, h.AgentID, false); !slices.Equal(got, forwardSteps) {
			t.Errorf("%s went through %v, want %v", h.Name, got, forwardSteps)
		}
		if !res.Drained[h.Server] {
			t.Errorf("the upstream file never showed %s drained", h.Server)
		}
	}
	if res.MaxDown < 1 || res.MaxDown > batchSize {
		t.Errorf("at most %d servers were drained at once, want 1 to %d (batch_size %d)", res.MaxDown, batchSize, batchSize)
	}
	for _, rh := range res.Final.Hosts {
		if rh.Step != "HOST_STEP_DONE" || rh.PreviousImage != images["v1"] {
			t.Errorf("host %s: step %s, previous image %s", rh.AgentID, rh.Step, rh.PreviousImage)
		}
	}
	CheckAllRun(t, f, "v2")
	CheckCreatedOnce(t, f, res, images["v2"])
	return res
}

// checkBatches wants a canary of one first, then batches of at most
// batchSize, every host in one of them.
func checkBatches(t *testing.T, f Fleet, res Result, batchSize int) {
	t.Helper()
	b := res.Final.Batches
	seen := 0
	for i, batch := range b {
		seen += len(batch.AgentIDs)
		if batch.Canary != (i == 0) || batch.Index != i || len(batch.AgentIDs) > batchSize {
			t.Errorf("batch %d: index %d canary %v, %d hosts", i, batch.Index, batch.Canary, len(batch.AgentIDs))
		}
	}
	if len(b) == 0 || len(b[0].AgentIDs) != 1 || seen != len(f.AppHosts()) {
		t.Errorf("batches %+v, want a canary of one, then batches of %d, %d hosts in all", b, batchSize, len(f.AppHosts()))
	}
}

// UnhealthyCanary rolls out the release whose /health answers 503 over
// hosts running version from: the canary fails its health gate and is
// rolled back on its own, no other host is touched, no request fails and
// traffic never reaches the broken release.
func UnhealthyCanary(t *testing.T, f Fleet, from string, batchSize int) Result {
	images := f.Images()
	bad := images[fixture.VersionUnhealthy]
	// A shorter healthy_deadline than the service's: the strategy of a
	// start replaces the default as a whole.
	res := Start(t, f, fmt.Sprintf(`{"service": %q, "image": %q, "reason": "release v3",
  "strategy": {"batch_size": %d, "canary": 1, "min_healthy_time": "2s", "healthy_deadline": "10s", "auto_rollback": true}}`,
		Service, bad, batchSize), LoadWorkers).FinishRecorded(t)
	if res.Final.State != "ROLLOUT_STATE_ROLLED_BACK" {
		t.Fatalf("rollout to the unhealthy release ended %s: %s", res.Final.State, res.Final.Message)
	}
	CheckNoFailures(t, "the rollout to the unhealthy release", res.Load)
	if res.Load.ByBody[from] == 0 || len(res.Load.ByBody) != 1 {
		t.Errorf("answers %v: want %s only (the canary stays drained while it runs the broken release)", res.Load.ByBody, from)
	}
	canary := HostOf(t, f, res.Final.Batches[0].AgentIDs[0])
	checkCanaryRolledBack(t, res, canary)
	for _, h := range f.AppHosts() {
		if h == canary {
			continue
		}
		if got := HostSteps(res.Events, h.AgentID, false); len(got) > 0 && got[len(got)-1] != "HOST_STEP_SKIPPED" || slices.Contains(got, "HOST_STEP_RESTARTING") {
			t.Errorf("%s went through %v; it should never have been restarted", h.Name, got)
		}
		if len(res.Creates[h.Container]) > 0 {
			t.Errorf("%s beyond the canary was re-created: %v", h.Name, res.Creates[h.Container])
		}
		if res.Drained[h.Server] {
			t.Errorf("%s was drained", h.Name)
		}
	}
	if n := count(res.Creates[canary.Container], bad); n != 1 {
		t.Errorf("the canary %s's container was created from the broken release %d times (%v), want once", canary.Name, n, res.Creates[canary.Container])
	}
	CheckAllRun(t, f, from)
	return res
}

// checkCanaryRolledBack wants the canary drained, failed in its health
// gate and rolled back, undrained; every other host skipped.
func checkCanaryRolledBack(t *testing.T, res Result, canary Host) {
	t.Helper()
	steps := HostSteps(res.Events, canary.AgentID, false)
	if !slices.Equal(steps, []string{"HOST_STEP_DRAINING", "HOST_STEP_RESTARTING", "HOST_STEP_HEALTH_CHECK", "HOST_STEP_FAILED"}) {
		t.Errorf("the canary went through %v, want drain, restart, health check, failed", steps)
	}
	if rb := HostSteps(res.Events, canary.AgentID, true); len(rb) == 0 || rb[len(rb)-1] != "HOST_STEP_ROLLED_BACK" || !slices.Contains(rb, "HOST_STEP_UNDRAINING") {
		t.Errorf("the canary's rollback went through %v, want it to end undrained and ROLLED_BACK", rb)
	}
	for _, rh := range res.Final.Hosts {
		want := "HOST_STEP_SKIPPED"
		if rh.AgentID == canary.AgentID {
			want = "HOST_STEP_ROLLED_BACK"
			if !strings.Contains(rh.Message, "health") && !strings.Contains(res.Final.Message, "health") {
				t.Errorf("neither the canary's message %q nor the rollout's %q says the health gate failed", rh.Message, res.Final.Message)
			}
		}
		if rh.Step != want {
			t.Errorf("host %s is %s, want %s: %s", rh.AgentID, rh.Step, want, rh.Message)
		}
	}
	if !res.Drained[canary.Server] {
		t.Errorf("the upstream file never showed the canary %s drained", canary.Server)
	}
}

// CheckNoFailures wants requests through Nginx and no failure among them.
func CheckNoFailures(t testing.TB, during string, r fixture.LoadReport) {
	t.Helper()
	if len(r.Failures) > 0 || r.Requests == 0 {
		t.Errorf("load during %s: %d requests, %d failed: %v", during, r.Requests, len(r.Failures), r.Failures[:min(5, len(r.Failures))])
	}
}

// CheckAllRun checks, through Docker and HTTP, that every application
// container runs the release version and answers with its name.
func CheckAllRun(t testing.TB, f Fleet, version string) {
	t.Helper()
	image := f.Images()[version]
	for _, h := range f.AppHosts() {
		c := f.Docker().Inspect(t, h.Container)
		if c.Config.Image != image || c.State == nil || !c.State.Running {
			t.Errorf("%s's container %s runs %s (running %v), want %s", h.Name, h.Container, c.Config.Image, c.State != nil && c.State.Running, image)
		}
		if got, err := fixture.Get(h.URL()); err != nil || got != version {
			t.Errorf("GET %s = %q, %v; want %q", h.URL(), got, err, version)
		}
	}
}

// CheckCreatedOnce checks with Docker's event stream that every
// application container was created exactly once during the rollout,
// from image.
func CheckCreatedOnce(t testing.TB, f Fleet, res Result, image string) {
	t.Helper()
	total := 0
	for _, h := range f.AppHosts() {
		total += len(res.Creates[h.Container])
		if !slices.Equal(res.Creates[h.Container], []string{image}) {
			t.Errorf("%s's container was created %d times (%v), want once from %s", h.Name, len(res.Creates[h.Container]), res.Creates[h.Container], image)
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
