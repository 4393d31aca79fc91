package rollout_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/controlplane/internal/notify"
	"flotilla.dev/controlplane/internal/store"
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
	hooks := subscribeAnalysisFailed(t, c)
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
	// The analysis.failed notification carries the measurement's evidence.
	body := hooks.wait(t)
	if body.Type != "analysis.failed" || body.Data.Subject["rollout_id"] != id || !strings.Contains(body.Data.Reason, "analysis failed at batch 1") {
		t.Fatalf("analysis.failed body: %+v", body)
	}
	results, _ := body.Data.Evidence["results"].([]any)
	first, _ := func() (map[string]any, bool) {
		if len(results) != 1 {
			return nil, false
		}
		m, ok := results[0].(map[string]any)
		return m, ok
	}()
	if first["query"] != "error-rate" || first["value"] != 0.05 || first["threshold"] != 0.01 || first["verdict"] != "fail" ||
		!strings.Contains(fmt.Sprint(first["promql"]), `host=~"web-01"`) {
		t.Fatalf("analysis.failed evidence %v, want the error-rate query's 0.05 > 0.01 on web-01", body.Data.Evidence)
	}
}

// hookReceiver is a webhook sink that keeps the bodies it receives.
type hookReceiver struct {
	mu     sync.Mutex
	bodies []notify.Body
}

// subscribeAnalysisFailed subscribes a webhook receiver to analysis.failed
// in the cluster's store.
func subscribeAnalysisFailed(t *testing.T, c *cluster) *hookReceiver {
	t.Helper()
	rx := &hookReceiver{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b notify.Body
		if err := json.NewDecoder(r.Body).Decode(&b); err == nil {
			rx.mu.Lock()
			rx.bodies = append(rx.bodies, b)
			rx.mu.Unlock()
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	sub := store.Subscription{ID: "ns-analysis", Name: "analysis", Events: []string{notify.TypeAnalysisFailed}, SinkKind: store.SinkWebhook,
		URL: srv.URL + "/hook", Secrets: []string{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}, CreatedAt: time.Now(), UpdatedAt: time.Now()}
	if err := c.current().Store().CreateSubscription(context.Background(), sub); err != nil {
		t.Fatal(err)
	}
	return rx
}

// wait returns the first body received.
func (rx *hookReceiver) wait(t *testing.T) notify.Body {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for time.Now().Before(deadline) {
		rx.mu.Lock()
		n := len(rx.bodies)
		rx.mu.Unlock()
		if n > 0 {
			rx.mu.Lock()
			defer rx.mu.Unlock()
			return rx.bodies[0]
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("no analysis.failed notification received")
	return notify.Body{}
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

// The analysis measures while the batch's hosts are in their health gate:
// with a five-second gate and a one-second interval, a canary failing 5 %
// of requests fails its analysis before its gate ends, on its own host
// (.Host), and the rollout stops and rolls it back.
func TestAnalysisMeasuresDuringTheHealthGate(t *testing.T) {
	prom := newPromStub(t, "0.05")
	c := newCluster(t, clusterOptions{web: 2})
	c.start()
	c.putService(nil)
	s := analysisStrategy(prom.srv.URL, 0)
	s.MinHealthyTime, s.HealthyDeadline = durationpb.New(5*time.Second), durationpb.New(time.Minute)
	id := c.startRollout(newImage, s).GetId()
	r := c.waitState(id, flotillav1.RolloutState_ROLLOUT_STATE_ROLLED_BACK, flotillav1.RolloutState_ROLLOUT_STATE_SUCCEEDED,
		flotillav1.RolloutState_ROLLOUT_STATE_FAILED)
	if r.GetState() != flotillav1.RolloutState_ROLLOUT_STATE_ROLLED_BACK || !strings.Contains(r.GetMessage(), "analysis failed at batch 1") {
		t.Fatalf("rollout ended %s %q, want ROLLED_BACK by the canary's analysis", r.GetState(), r.GetMessage())
	}
	var failedAt, doneAt int64
	for _, ev := range c.history(id) {
		if a := ev.GetAnalysis(); a != nil && failedAt == 0 && a.GetVerdict() == flotillav1.AnalysisVerdict_ANALYSIS_VERDICT_FAIL {
			failedAt = ev.GetSequence()
			if !strings.Contains(a.GetPromql(), `host=~"web-01"`) {
				t.Errorf("measured %q, want the canary's host", a.GetPromql())
			}
		}
		if h := ev.GetHost(); h != nil && h.GetAgentId() == "web-01" && !h.GetRollingBack() && h.GetStep() == flotillav1.HostStep_HOST_STEP_DONE {
			doneAt = ev.GetSequence()
		}
	}
	if failedAt == 0 || (doneAt != 0 && doneAt < failedAt) {
		t.Fatalf("the failed measurement is event %d, the canary's gate ended at event %d: want the failure during the gate", failedAt, doneAt)
	}
	if restarts, _ := c.agents[1].snapshot(); len(restarts) != 0 {
		t.Errorf("web-02 was restarted (%v): only the canary may be touched", restarts)
	}
}
