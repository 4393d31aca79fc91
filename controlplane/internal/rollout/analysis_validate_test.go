package rollout_test

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/controlplane/internal/rollout"
)

// A strategy's analysis is checked field by field, and an error names the
// field.
func TestValidateAnalysis(t *testing.T) {
	good := func() *flotillav1.RolloutStrategy { return analysisStrategy("http://prometheus:9090", 5*time.Minute) }
	if err := rollout.ValidateStrategy("strategy", good()); err != nil {
		t.Fatalf("a good analysis: %v", err)
	}
	zeroBake := good()
	zeroBake.Analysis.Bake = durationpb.New(0)
	if err := rollout.ValidateStrategy("strategy", zeroBake); err != nil {
		t.Fatalf("bake 0s must be allowed: %v", err)
	}
	tests := []struct {
		field  string
		change func(a *flotillav1.Analysis)
	}{
		{"strategy.analysis.prometheus_url", func(a *flotillav1.Analysis) { a.PrometheusUrl = "ftp://x" }},
		{"strategy.analysis.queries", func(a *flotillav1.Analysis) { a.Queries = nil }},
		{"strategy.analysis.queries[0].name", func(a *flotillav1.Analysis) { a.Queries[0].Name = "Error Rate" }},
		{"strategy.analysis.queries[0].query", func(a *flotillav1.Analysis) { a.Queries[0].Query = `up{host="{{.Hostname}}"}` }},
		{"strategy.analysis.queries[0].query", func(a *flotillav1.Analysis) { a.Queries[0].Query = "" }},
		{"strategy.analysis.queries[0].min_requests_query", func(a *flotillav1.Analysis) { a.Queries[0].MinRequestsQuery = "{{" }},
		{"strategy.analysis.queries[0].min_requests", func(a *flotillav1.Analysis) { a.Queries[0].MinRequests = 0 }},
		{"strategy.analysis.queries[0].fail_when", func(a *flotillav1.Analysis) { a.Queries[0].FailWhen = 0 }},
		{"strategy.analysis.queries[0].compare_previous.max_ratio", func(a *flotillav1.Analysis) {
			a.Queries[0].ComparePrevious = &flotillav1.PreviousComparison{MaxRatio: 0.5}
		}},
		{"strategy.analysis.queries[0].compare_previous", func(a *flotillav1.Analysis) {
			a.Queries[0].ComparePrevious = &flotillav1.PreviousComparison{}
		}},
		{"strategy.analysis.queries[1].name", func(a *flotillav1.Analysis) { a.Queries = append(a.Queries, a.Queries[0]) }},
		{"strategy.analysis.interval", func(a *flotillav1.Analysis) { a.Interval = durationpb.New(time.Millisecond) }},
		{"strategy.analysis.bake", func(a *flotillav1.Analysis) { a.Bake = durationpb.New(-time.Second) }},
		{"strategy.analysis.consecutive_failures", func(a *flotillav1.Analysis) { a.ConsecutiveFailures = 101 }},
		{"strategy.analysis.inconclusive", func(a *flotillav1.Analysis) { a.Inconclusive = 7 }},
	}
	for _, tt := range tests {
		s := good()
		tt.change(s.Analysis)
		err := rollout.ValidateStrategy("strategy", s)
		if err == nil || !strings.Contains(err.Error(), tt.field+":") {
			t.Errorf("%s: ValidateStrategy = %v, want an error naming it", tt.field, err)
		}
	}
}

// A rollout whose analysis names no Prometheus is refused when the control
// plane has no analysis.prometheus_url either.
func TestAnalysisWithoutPrometheusIsRefused(t *testing.T) {
	c := newCluster(t, clusterOptions{web: 1})
	c.start()
	c.putService(nil)
	_, err := c.engine().StartRollout(operator(), &flotillav1.StartRolloutRequest{Service: serviceName, Image: newImage,
		Strategy: analysisStrategy("", time.Minute), Reason: "test"}, "operator:at-1")
	if err == nil || !strings.Contains(err.Error(), "strategy.analysis.prometheus_url") {
		t.Fatalf("StartRollout without a Prometheus = %v, want the field named", err)
	}
}
