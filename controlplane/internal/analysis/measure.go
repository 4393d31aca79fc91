package analysis

import (
	"context"
	"fmt"
	"time"

	flotillav1 "flotilla.dev/gen/flotilla/v1"
)

// Measurement is what one query is measured on: the new version's values
// and time, and the previous version's (for compare_previous).
type Measurement struct {
	// New are the values of the new version's hosts.
	New Values
	// At is when the new version is measured.
	At time.Time
	// Old are the values of the previous version (Image is the previous
	// image; Hosts those still running it).
	Old Values
	// OldAt is when the previous version is measured: At when hosts still
	// run it, the rollout's start otherwise.
	OldAt time.Time
	// Timeout bounds each query (default 10s).
	Timeout time.Duration
}

// Measure measures one query and returns its result (Query, Promql, Value,
// Threshold, Verdict, Message; the caller sets Batch and At).
func Measure(ctx context.Context, p Querier, q *flotillav1.AnalysisQuery, m Measurement) *flotillav1.AnalysisResult {
	res := &flotillav1.AnalysisResult{Query: q.GetName(), Threshold: q.GetThreshold()}
	inconclusive := func(format string, args ...any) *flotillav1.AnalysisResult {
		res.Verdict, res.Value, res.Message = flotillav1.AnalysisVerdict_ANALYSIS_VERDICT_INCONCLUSIVE, 0, fmt.Sprintf(format, args...)
		return res
	}
	promql, err := Render(q.GetQuery(), m.New)
	if err != nil {
		return inconclusive("the query's template: %v", err)
	}
	res.Promql = promql
	if mq := q.GetMinRequestsQuery(); mq != "" {
		rq, err := Render(mq, m.New)
		if err != nil {
			return inconclusive("min_requests_query's template: %v", err)
		}
		n, err := run(ctx, p, rq, m.At, Lowest, m.Timeout)
		if err != nil {
			return inconclusive("min_requests_query: %v", err)
		}
		if n < q.GetMinRequests() {
			return inconclusive("%g requests in %s, fewer than min_requests %g: too little traffic to decide", n, Duration(m.New.Interval), q.GetMinRequests())
		}
	}
	worst, fails := Highest, compare(q.GetFailWhen())
	if c := q.GetFailWhen(); c == flotillav1.Comparison_COMPARISON_LESS || c == flotillav1.Comparison_COMPARISON_LESS_OR_EQUAL {
		worst = Lowest
	}
	v, err := run(ctx, p, promql, m.At, worst, m.Timeout)
	if err != nil {
		return inconclusive("%v", err)
	}
	res.Value = v
	if cp := q.GetComparePrevious(); cp != nil {
		return comparePrevious(ctx, p, q, m, res)
	}
	res.Verdict = flotillav1.AnalysisVerdict_ANALYSIS_VERDICT_PASS
	res.Message = fmt.Sprintf("%g, fails when %s %g", v, symbol(q.GetFailWhen()), q.GetThreshold())
	if fails(v, q.GetThreshold()) {
		res.Verdict = flotillav1.AnalysisVerdict_ANALYSIS_VERDICT_FAIL
		res.Message = fmt.Sprintf("%g %s %g", v, symbol(q.GetFailWhen()), q.GetThreshold())
	}
	return res
}

// comparePrevious measures the previous version and compares res.Value,
// the new version's, with it.
func comparePrevious(ctx context.Context, p Querier, q *flotillav1.AnalysisQuery, m Measurement, res *flotillav1.AnalysisResult) *flotillav1.AnalysisResult {
	cp := q.GetComparePrevious()
	oldQL, err := Render(q.GetQuery(), m.Old)
	if err == nil {
		var old float64
		if old, err = run(ctx, p, oldQL, m.OldAt, Highest, m.Timeout); err == nil {
			limit, how := Limit(old, cp)
			res.Threshold = limit
			res.Verdict = flotillav1.AnalysisVerdict_ANALYSIS_VERDICT_PASS
			res.Message = fmt.Sprintf("new %g, previous %g: within %s (limit %g)", res.Value, old, how, limit)
			if res.Value > limit {
				res.Verdict = flotillav1.AnalysisVerdict_ANALYSIS_VERDICT_FAIL
				res.Message = fmt.Sprintf("new %g, previous %g: above %s (limit %g)", res.Value, old, how, limit)
			}
			return res
		}
	}
	res.Verdict, res.Value = flotillav1.AnalysisVerdict_ANALYSIS_VERDICT_INCONCLUSIVE, 0
	res.Message = fmt.Sprintf("the previous version (%s): %v", oldQL, err)
	return res
}

// Limit is the highest value the new version may have given the previous
// version's old value: the lower of old*max_ratio and old+max_delta (those
// set), and a description.
func Limit(old float64, cp *flotillav1.PreviousComparison) (float64, string) {
	r, d := cp.GetMaxRatio(), cp.GetMaxDelta()
	switch {
	case r > 0 && d > 0:
		return min(old*r, old+d), fmt.Sprintf("max_ratio %g and max_delta %g", r, d)
	case r > 0:
		return old * r, fmt.Sprintf("max_ratio %g", r)
	default:
		return old + d, fmt.Sprintf("max_delta %g", d)
	}
}

func run(ctx context.Context, p Querier, promql string, at time.Time, worst Worst, timeout time.Duration) (float64, error) {
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return p.Query(ctx, promql, at, worst)
}

// compare returns the test "value fails against threshold" of c.
func compare(c flotillav1.Comparison) func(v, t float64) bool {
	switch c {
	case flotillav1.Comparison_COMPARISON_LESS:
		return func(v, t float64) bool { return v < t }
	case flotillav1.Comparison_COMPARISON_GREATER_OR_EQUAL:
		return func(v, t float64) bool { return v >= t }
	case flotillav1.Comparison_COMPARISON_LESS_OR_EQUAL:
		return func(v, t float64) bool { return v <= t }
	default:
		return func(v, t float64) bool { return v > t }
	}
}

func symbol(c flotillav1.Comparison) string {
	switch c {
	case flotillav1.Comparison_COMPARISON_LESS:
		return "<"
	case flotillav1.Comparison_COMPARISON_GREATER_OR_EQUAL:
		return ">="
	case flotillav1.Comparison_COMPARISON_LESS_OR_EQUAL:
		return "<="
	default:
		return ">"
	}
}
