package rollout

import (
	"context"
	"fmt"
	"strings"
	"time"

	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/controlplane/internal/analysis"
)

// Analysis defaults (see Analysis in rollout.proto).
const (
	DefaultAnalysisInterval = time.Minute
	DefaultBake             = 5 * time.Minute
	bakeBatch               = -1 // AnalysisStatus.batch during the bake
)

// analysisDefaults fills an analysis' unset fields.
func analysisDefaults(a *flotillav1.Analysis) {
	if a.Interval == nil {
		a.Interval = durationpb.New(DefaultAnalysisInterval)
	}
	if a.ConsecutiveFailures == 0 {
		a.ConsecutiveFailures = 1
	}
	if a.ConsecutiveSuccesses == 0 {
		a.ConsecutiveSuccesses = 1
	}
	if a.Inconclusive == flotillav1.InconclusivePolicy_INCONCLUSIVE_POLICY_UNSPECIFIED {
		a.Inconclusive = flotillav1.InconclusivePolicy_INCONCLUSIVE_POLICY_PAUSE
	}
	if a.Bake == nil {
		a.Bake = durationpb.New(DefaultBake)
	}
}

// analysisStatus reads the stored analysis in progress (nil when none).
func analysisStatus(b []byte) (*flotillav1.AnalysisStatus, error) {
	if len(b) == 0 {
		return nil, nil
	}
	st := &flotillav1.AnalysisStatus{}
	if err := proto.Unmarshal(b, st); err != nil {
		return nil, err
	}
	return st, nil
}

// keepAnalysis writes the analysis in progress with the step's transition.
func (r *runner) keepAnalysis(c *change) {
	b, err := proto.Marshal(r.status)
	if err != nil {
		panic(err) // a message built here always encodes
	}
	r.rec.Analysis = b
	c.rollout = true
}

// analysisGate runs the analysis of a batch (index batch) or of the bake
// (bakeBatch) and reports whether it passed. It measures every interval,
// starting one interval after the batch's first host entered its health
// gate (the bake: after its start); a failed verdict stops the rollout,
// inconclusive ones apply the strategy's policy. While the batch's hosts
// are still in their gates (inGate) the consecutive counts go on, but
// inconclusive results wait for the gates' end to apply the policy: a
// drained host has no traffic to measure yet.
func (r *runner) analysisGate(ctx context.Context, c *change, batch int, paused, inGate bool) bool {
	a := r.strategy.GetAnalysis()
	if a == nil {
		return true
	}
	interval := a.GetInterval().AsDuration()
	if r.status == nil || r.status.GetBatch() != int32(batch) {
		var kept []*flotillav1.AnalysisResult
		if r.status != nil {
			kept = r.status.GetResults()
		}
		r.status = &flotillav1.AnalysisStatus{Batch: int32(batch), NextAt: ts(c.now.Add(interval)), Results: kept}
		r.keepAnalysis(c)
	}
	if paused {
		return false
	}
	if next := r.status.GetNextAt().AsTime(); c.now.Before(next) {
		c.wakeAt(next)
		return r.status.GetSuccesses() >= a.GetConsecutiveSuccesses()
	}
	results := r.measure(ctx, c, batch, interval)
	st := r.status
	st.NextAt = ts(c.now.Add(interval))
	verdict, why := overall(results)
	switch verdict {
	case flotillav1.AnalysisVerdict_ANALYSIS_VERDICT_FAIL:
		st.Failures, st.Successes, st.Inconclusive = st.Failures+1, 0, 0
	case flotillav1.AnalysisVerdict_ANALYSIS_VERDICT_INCONCLUSIVE:
		st.Inconclusive, st.Successes = st.Inconclusive+1, 0
	default:
		st.Successes, st.Failures, st.Inconclusive = st.Successes+1, 0, 0
	}
	r.keepAnalysis(c)
	c.wakeAt(st.NextAt.AsTime())
	where := r.gateName(batch)
	switch {
	case st.Failures >= a.GetConsecutiveFailures():
		r.stopAnalysis(c, batch, fmt.Sprintf("analysis failed %s (%d in a row): %s", where, st.Failures, why), results)
		return false
	case st.Inconclusive >= a.GetConsecutiveFailures() && !inGate:
		msg := fmt.Sprintf("analysis inconclusive %s (%d in a row): %s", where, st.Inconclusive, why)
		st.Inconclusive = 0
		r.keepAnalysis(c)
		if a.GetInconclusive() == flotillav1.InconclusivePolicy_INCONCLUSIVE_POLICY_FAIL {
			r.stopAnalysis(c, batch, msg+" (inconclusive: FAIL)", results)
			return false
		}
		r.setState(c, flotillav1.RolloutState_ROLLOUT_STATE_PAUSED, msg+"; paused (inconclusive: PAUSE): ResumeRollout measures again")
		return false
	}
	return st.Successes >= a.GetConsecutiveSuccesses()
}

func (r *runner) gateName(batch int) string {
	if batch == bakeBatch {
		return "during the bake"
	}
	return fmt.Sprintf("at batch %d", batch+1)
}

// overall is a measurement's verdict: FAIL if a query failed, else
// INCONCLUSIVE if one was, else PASS; why lists the decisive results.
func overall(results []*flotillav1.AnalysisResult) (flotillav1.AnalysisVerdict, string) {
	verdict := flotillav1.AnalysisVerdict_ANALYSIS_VERDICT_PASS
	var fails, unsure, all []string
	for _, res := range results {
		line := res.GetQuery() + ": " + res.GetMessage()
		all = append(all, line)
		switch res.GetVerdict() {
		case flotillav1.AnalysisVerdict_ANALYSIS_VERDICT_FAIL:
			fails = append(fails, line)
		case flotillav1.AnalysisVerdict_ANALYSIS_VERDICT_INCONCLUSIVE:
			unsure = append(unsure, line)
		}
	}
	switch {
	case len(fails) > 0:
		return flotillav1.AnalysisVerdict_ANALYSIS_VERDICT_FAIL, strings.Join(fails, "; ")
	case len(unsure) > 0:
		return flotillav1.AnalysisVerdict_ANALYSIS_VERDICT_INCONCLUSIVE, strings.Join(unsure, "; ")
	}
	return verdict, strings.Join(all, "; ")
}

// stopAnalysis stops the rollout after a failed analysis, through the
// same path as max_failures: hosts in progress finish, then the changed
// hosts are rolled back when auto_rollback is set. The deciding results
// go to OnAnalysisFailed once stored (the analysis.failed notification).
func (r *runner) stopAnalysis(c *change, batch int, reason string, results []*flotillav1.AnalysisResult) {
	r.rec.Stop, r.rec.StopState = reason, int32(flotillav1.RolloutState_ROLLOUT_STATE_FAILED)
	r.rec.StopRollback = r.strategy.GetAutoRollback() || r.blueGreen()
	c.analysisFailed = &AnalysisFailure{RolloutID: r.rec.ID, Service: r.rec.Service, Image: r.rec.Image, Batch: batch,
		Reason: reason, Results: results, AutoRollback: r.rec.StopRollback, At: c.now}
	msg := "stopping: " + reason
	if r.rec.StopRollback {
		msg += "; the changed hosts are rolled back"
	}
	r.setState(c, flotillav1.RolloutState(r.rec.State), msg)
}

// measure measures every query once and records each result as an event
// and as the query's latest result.
func (r *runner) measure(ctx context.Context, c *change, batch int, interval time.Duration) []*flotillav1.AnalysisResult {
	m := r.measurement(batch, interval, c.now)
	a := r.strategy.GetAnalysis()
	url := a.GetPrometheusUrl()
	if url == "" {
		url = r.e.cfg.PrometheusURL
	}
	p, err := analysis.NewPrometheus(url, nil)
	out := make([]*flotillav1.AnalysisResult, 0, len(a.GetQueries()))
	for _, q := range a.GetQueries() {
		var res *flotillav1.AnalysisResult
		if err != nil {
			res = &flotillav1.AnalysisResult{Query: q.GetName(), Threshold: q.GetThreshold(),
				Verdict: flotillav1.AnalysisVerdict_ANALYSIS_VERDICT_INCONCLUSIVE, Message: err.Error()}
		} else {
			res = analysis.Measure(ctx, p, q, m)
		}
		res.Batch, res.At = int32(batch), ts(c.now)
		out = append(out, res)
		c.events = append(c.events, encodeEvent(c.now, &flotillav1.RolloutEvent{Kind: &flotillav1.RolloutEvent_Analysis{Analysis: res}}))
		r.log.Info("analysis", zap.String("query", res.GetQuery()), zap.Float64("value", res.GetValue()),
			zap.Float64("threshold", res.GetThreshold()), zap.String("verdict", res.GetVerdict().String()), zap.String("message", res.GetMessage()))
		r.keepResult(res)
		r.e.cfg.Metrics.measured(res.GetVerdict())
	}
	return out
}

// keepResult replaces the query's latest result.
func (r *runner) keepResult(res *flotillav1.AnalysisResult) {
	for i, old := range r.status.Results {
		if old.GetQuery() == res.GetQuery() {
			r.status.Results[i] = res
			return
		}
	}
	r.status.Results = append(r.status.Results, res)
}

// measurement is what the queries measure: the batch's hosts that run
// the new image, in their health gate or past it (in the bake: every
// host that does), against the hosts still on the
// previous one, or the rollout's start when none is left.
func (r *runner) measurement(batch int, interval time.Duration, now time.Time) analysis.Measurement {
	var news, olds, all []string
	prev := ""
	for _, h := range r.hosts {
		all = append(all, h.AgentID)
		step := flotillav1.HostStep(h.Step)
		if runsNewImage(step) && (batch == bakeBatch || h.Batch == batch) {
			news = append(news, h.AgentID)
		}
		if !h.Changed {
			olds = append(olds, h.AgentID)
		}
		if prev == "" && h.Changed {
			prev = h.PreviousImage
		}
	}
	if prev == "" {
		for _, h := range r.hosts {
			if h.ObservedImage != "" {
				prev = h.ObservedImage
				break
			}
		}
	}
	m := analysis.Measurement{
		New: analysis.Values{Hosts: news, Service: r.rec.Service, Image: r.rec.Image, PreviousImage: prev, Interval: interval},
		At:  now,
		Old: analysis.Values{Hosts: olds, Service: r.rec.Service, Image: prev, PreviousImage: prev, Interval: interval}, OldAt: now,
	}
	if len(olds) == 0 {
		m.Old.Hosts, m.OldAt = all, r.rec.CreatedAt
	}
	return m
}

// bake runs the bake after the last batch and reports whether the rollout
// may succeed: at once without analysis or with a bake of 0s, otherwise
// once bake_until passed and the analysis passed its consecutive
// measurements.
func (r *runner) bake(ctx context.Context, c *change, paused bool) bool {
	a := r.strategy.GetAnalysis()
	if a == nil || a.GetBake().AsDuration() <= 0 {
		return true
	}
	if r.rec.BakeUntil.IsZero() {
		if paused {
			return false
		}
		r.rec.BakeUntil = c.now.Add(a.GetBake().AsDuration())
		r.setState(c, flotillav1.RolloutState_ROLLOUT_STATE_BAKING, fmt.Sprintf("every batch done; baking for %s (until %s) with analysis every %s",
			a.GetBake().AsDuration(), r.rec.BakeUntil.UTC().Format(time.RFC3339), a.GetInterval().AsDuration()))
	}
	passed := r.analysisGate(ctx, c, bakeBatch, paused, false)
	if r.rec.Stop != "" || paused {
		return false
	}
	if c.now.Before(r.rec.BakeUntil) {
		c.wakeAt(r.rec.BakeUntil)
		return false
	}
	return passed
}
