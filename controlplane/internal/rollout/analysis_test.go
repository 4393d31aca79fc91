package rollout_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	flotillav1 "flotilla.dev/gen/flotilla/v1"
)

// promStub is a Prometheus HTTP API answering /api/v1/query in the real
// JSON format: the error-rate query with the value the test sets ("" for
// no series), the request count with 1000.
type promStub struct {
	mu    sync.Mutex
	value string
	srv   *httptest.Server
}

func newPromStub(t *testing.T, value string) *promStub {
	p := &promStub{value: value}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		p.mu.Lock()
		v := p.value
		p.mu.Unlock()
		if strings.HasPrefix(r.Form.Get("query"), "requests") {
			v = "1000"
		}
		result := ""
		if v != "" {
			result = fmt.Sprintf(`{"metric":{},"value":[%d,"%s"]}`, time.Now().Unix(), v)
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = fmt.Fprintf(w, `{"status":"success","data":{"resultType":"vector","result":[%s]}}`, result)
	}))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *promStub) set(v string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.value = v
}

// analysisStrategy is a fast strategy with an error-rate analysis against
// url: measured every second, a bake of bake.
func analysisStrategy(url string, bake time.Duration) *flotillav1.RolloutStrategy {
	s := strategy(1)
	s.Canary = 1
	s.AutoRollback = true
	s.Analysis = &flotillav1.Analysis{
		PrometheusUrl: url,
		Queries: []*flotillav1.AnalysisQuery{{
			Name: "error-rate", Query: `errors{service="{{.Service}}",host=~"{{.Host}}",image="{{.Image}}"}`,
			FailWhen: flotillav1.Comparison_COMPARISON_GREATER, Threshold: 0.01,
			MinRequestsQuery: `requests{service="{{.Service}}"}`, MinRequests: 10,
		}},
		Interval: durationpb.New(time.Second),
		Bake:     durationpb.New(bake),
	}
	return s
}

// analysisResults are the analysis events of a history.
func analysisResults(evs []*flotillav1.RolloutEvent) []*flotillav1.AnalysisResult {
	var out []*flotillav1.AnalysisResult
	for _, ev := range evs {
		if a := ev.GetAnalysis(); a != nil {
			out = append(out, a)
		}
	}
	return out
}

// A canary whose error rate is above 1 % fails its analysis gate: the
// rollout stops and rolls the canary back; no other host is touched.
func TestAnalysisFailsTheCanaryAndRollsBack(t *testing.T) {
	prom := newPromStub(t, "0.05")
	c := newCluster(t, clusterOptions{web: 3})
	c.start()
	c.putService(nil)
	id := c.startRollout(newImage, analysisStrategy(prom.srv.URL, 0)).GetId()
	r := c.waitState(id, flotillav1.RolloutState_ROLLOUT_STATE_ROLLED_BACK, flotillav1.RolloutState_ROLLOUT_STATE_SUCCEEDED,
		flotillav1.RolloutState_ROLLOUT_STATE_FAILED)
	if r.GetState() != flotillav1.RolloutState_ROLLOUT_STATE_ROLLED_BACK || !strings.Contains(r.GetMessage(), "analysis failed at batch 1") {
		t.Fatalf("rollout ended %s %q, want ROLLED_BACK by the canary's analysis", r.GetState(), r.GetMessage())
	}
	for _, a := range c.agents[1:] {
		if restarts, _ := a.snapshot(); len(restarts) != 0 {
			t.Errorf("%s was restarted (%v): only the canary may be touched", a.id, restarts)
		}
	}
	res := analysisResults(c.history(id))
	if len(res) != 1 || res[0].GetVerdict() != flotillav1.AnalysisVerdict_ANALYSIS_VERDICT_FAIL || res[0].GetValue() != 0.05 ||
		res[0].GetThreshold() != 0.01 || res[0].GetBatch() != 0 || !strings.Contains(res[0].GetPromql(), `host=~"web-01"`) {
		t.Fatalf("analysis events = %v, want one FAIL of 0.05 > 0.01 on web-01 at batch 0", res)
	}
	if got := r.GetAnalysis().GetResults(); len(got) != 1 || got[0].GetVerdict() != flotillav1.AnalysisVerdict_ANALYSIS_VERDICT_FAIL {
		t.Fatalf("GetRollout's analysis = %v, want the failed result", r.GetAnalysis())
	}
	if got := c.metric("flotilla_rollout_analysis_measurements_total", "verdict", "fail"); got != 1 {
		t.Errorf("flotilla_rollout_analysis_measurements_total{verdict=fail} = %v, want 1", got)
	}
}

// A good release passes each batch's gate and the bake, and only then
// SUCCEEDS; the bake's measurements are events of batch -1.
func TestAnalysisPassesGatesAndBake(t *testing.T) {
	prom := newPromStub(t, "0.001")
	c := newCluster(t, clusterOptions{web: 2})
	c.start()
	c.putService(nil)
	id := c.startRollout(newImage, analysisStrategy(prom.srv.URL, 2*time.Second)).GetId()
	baking := c.waitState(id, flotillav1.RolloutState_ROLLOUT_STATE_BAKING)
	if baking.GetBakeUntil() == nil || !strings.Contains(baking.GetMessage(), "baking for 2s") {
		t.Fatalf("BAKING rollout: bake_until %v %q", baking.GetBakeUntil(), baking.GetMessage())
	}
	r := c.waitState(id, flotillav1.RolloutState_ROLLOUT_STATE_SUCCEEDED, flotillav1.RolloutState_ROLLOUT_STATE_FAILED,
		flotillav1.RolloutState_ROLLOUT_STATE_ROLLED_BACK)
	if r.GetState() != flotillav1.RolloutState_ROLLOUT_STATE_SUCCEEDED {
		t.Fatalf("rollout ended %s %q, want SUCCEEDED", r.GetState(), r.GetMessage())
	}
	evs := c.history(id)
	checkSequence(t, evs)
	var batches, bake int
	var succeededAt time.Time
	for _, ev := range evs {
		if a := ev.GetAnalysis(); a != nil {
			if a.GetVerdict() != flotillav1.AnalysisVerdict_ANALYSIS_VERDICT_PASS {
				t.Fatalf("analysis result %v, want PASS", a)
			}
			if a.GetBatch() == -1 {
				bake++
			} else {
				batches++
			}
		}
		if ev.GetState().GetState() == flotillav1.RolloutState_ROLLOUT_STATE_SUCCEEDED {
			succeededAt = ev.GetAt().AsTime()
		}
	}
	if batches < 2 || bake < 1 {
		t.Fatalf("%d batch measurements and %d bake ones, want one per batch (2) and at least one in the bake", batches, bake)
	}
	if succeededAt.Before(baking.GetBakeUntil().AsTime()) {
		t.Fatalf("SUCCEEDED at %s, before bake_until %s", succeededAt, baking.GetBakeUntil().AsTime())
	}
}

// No data is not a pass: with no series the gate is inconclusive and the
// rollout pauses (the default policy); once data comes, a resume measures
// again and the rollout goes on.
func TestAnalysisInconclusivePausesUntilResumed(t *testing.T) {
	prom := newPromStub(t, "")
	c := newCluster(t, clusterOptions{web: 2})
	c.start()
	c.putService(nil)
	id := c.startRollout(newImage, analysisStrategy(prom.srv.URL, 0)).GetId()
	r := c.waitState(id, flotillav1.RolloutState_ROLLOUT_STATE_PAUSED)
	if !strings.Contains(r.GetMessage(), "analysis inconclusive at batch 1") || !strings.Contains(r.GetMessage(), "no series") {
		t.Fatalf("paused with %q, want the inconclusive analysis", r.GetMessage())
	}
	if restarts, _ := c.agents[1].snapshot(); len(restarts) != 0 {
		t.Fatalf("web-02 restarted while the canary's analysis was inconclusive")
	}
	prom.set("0.002")
	if _, err := c.engine().ResumeRollout(operator(), id); err != nil {
		t.Fatalf("ResumeRollout: %v", err)
	}
	if r := c.waitState(id, flotillav1.RolloutState_ROLLOUT_STATE_SUCCEEDED, flotillav1.RolloutState_ROLLOUT_STATE_PAUSED,
		flotillav1.RolloutState_ROLLOUT_STATE_ROLLED_BACK); r.GetState() != flotillav1.RolloutState_ROLLOUT_STATE_SUCCEEDED {
		t.Fatalf("after the resume: %s %q, want SUCCEEDED", r.GetState(), r.GetMessage())
	}
}

// With inconclusive: FAIL, an unreachable Prometheus fails the rollout,
// which rolls back.
func TestAnalysisUnreachablePrometheusWithFailPolicy(t *testing.T) {
	prom := newPromStub(t, "0")
	url := prom.srv.URL
	prom.srv.Close()
	c := newCluster(t, clusterOptions{web: 2})
	c.start()
	c.putService(nil)
	s := analysisStrategy(url, 0)
	s.Analysis.Inconclusive = flotillav1.InconclusivePolicy_INCONCLUSIVE_POLICY_FAIL
	id := c.startRollout(newImage, s).GetId()
	r := c.waitState(id, flotillav1.RolloutState_ROLLOUT_STATE_ROLLED_BACK, flotillav1.RolloutState_ROLLOUT_STATE_PAUSED,
		flotillav1.RolloutState_ROLLOUT_STATE_SUCCEEDED)
	if r.GetState() != flotillav1.RolloutState_ROLLOUT_STATE_ROLLED_BACK || !strings.Contains(r.GetMessage(), "inconclusive: FAIL") {
		t.Fatalf("rollout ended %s %q, want ROLLED_BACK by the FAIL policy", r.GetState(), r.GetMessage())
	}
}

// A control plane restarted mid-bake keeps bake_until and the analysis'
// results: the bake is not started again.
func TestBakeSurvivesARestart(t *testing.T) {
	prom := newPromStub(t, "0.001")
	c := newCluster(t, clusterOptions{web: 1})
	c.start()
	c.putService(nil)
	id := c.startRollout(newImage, analysisStrategy(prom.srv.URL, time.Hour)).GetId()
	before := c.waitState(id, flotillav1.RolloutState_ROLLOUT_STATE_BAKING)
	eventually(t, "a measurement in the bake", func() bool {
		return c.get(id).GetAnalysis().GetBatch() == -1 && c.get(id).GetAnalysis().GetSuccesses() > 0
	})
	c.restartCP()
	after := c.get(id)
	if after.GetState() != flotillav1.RolloutState_ROLLOUT_STATE_BAKING || !after.GetBakeUntil().AsTime().Equal(before.GetBakeUntil().AsTime()) {
		t.Fatalf("after the restart: %s bake_until %v, want BAKING until %v", after.GetState(), after.GetBakeUntil().AsTime(), before.GetBakeUntil().AsTime())
	}
	if after.GetAnalysis().GetSuccesses() == 0 || len(after.GetAnalysis().GetResults()) != 1 {
		t.Fatalf("analysis after the restart = %v, want the stored results and counts", after.GetAnalysis())
	}
	n := after.GetAnalysis().GetSuccesses()
	eventually(t, "the new process to measure on", func() bool { return c.get(id).GetAnalysis().GetSuccesses() > n })
	if got := c.get(id); !got.GetBakeUntil().AsTime().Equal(before.GetBakeUntil().AsTime()) || got.GetState() != flotillav1.RolloutState_ROLLOUT_STATE_BAKING {
		t.Fatalf("the new process moved the bake: %s until %v", got.GetState(), got.GetBakeUntil().AsTime())
	}
	if _, err := c.engine().AbortRollout(operator(), id, "enough", true); err != nil {
		t.Fatalf("AbortRollout during the bake: %v", err)
	}
	c.waitState(id, flotillav1.RolloutState_ROLLOUT_STATE_ROLLED_BACK)
}

// The replica driving a baking rollout dies; the replica that takes the
// rollout over keeps its bake_until and analysis counts (written under
// the rollout's fence) and measures on.
func TestBakeSurvivesAReplicaTakeover(t *testing.T) {
	prom := newPromStub(t, "0.001")
	c, reps, stores := newReplicaCluster(t, 2, clusterOptions{web: 2, heartbeat: 5 * time.Millisecond, lostAfter: replicaLostAfter})
	a := reps.All[0]
	c.putService(nil)
	c.startAgents()
	id := c.startRollout(newImage, analysisStrategy(prom.srv.URL, time.Hour)).GetId()
	before := c.waitState(id, flotillav1.RolloutState_ROLLOUT_STATE_BAKING)
	eventually(t, "a measurement in the bake", func() bool { return c.get(id).GetAnalysis().GetSuccesses() > 0 })
	stores[0].kill()
	a.Stop()
	b := waitDriver(t, reps, id, a)
	c.moveAgents(b)
	after := c.get(id)
	if after.GetState() != flotillav1.RolloutState_ROLLOUT_STATE_BAKING || !after.GetBakeUntil().AsTime().Equal(before.GetBakeUntil().AsTime()) {
		t.Fatalf("after the takeover: %s bake_until %v, want BAKING until %v", after.GetState(), after.GetBakeUntil().AsTime(), before.GetBakeUntil().AsTime())
	}
	n := after.GetAnalysis().GetSuccesses()
	if n == 0 {
		t.Fatalf("analysis after the takeover = %v, want the stored counts", after.GetAnalysis())
	}
	eventually(t, "the new driver to measure on", func() bool { return c.get(id).GetAnalysis().GetSuccesses() > n })
	if got := c.get(id); !got.GetBakeUntil().AsTime().Equal(before.GetBakeUntil().AsTime()) {
		t.Fatalf("the new driver moved the bake to %v", got.GetBakeUntil().AsTime())
	}
	if _, err := b.Server.Rollouts().AbortRollout(operator(), id, "enough", false); err != nil {
		t.Fatalf("AbortRollout during the bake: %v", err)
	}
	c.waitState(id, flotillav1.RolloutState_ROLLOUT_STATE_ABORTED)
}
