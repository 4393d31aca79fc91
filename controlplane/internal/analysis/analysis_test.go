package analysis_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/controlplane/internal/analysis"
)

func TestEscapeKeepsValuesInsideTheirString(t *testing.T) {
	for in, want := range map[string]string{
		`app:2`:                 `app:2`,
		`a"} or vector(1) #`:    `a\"} or vector(1) #`,
		`back\slash`:            `back\\slash`,
		"new\nline\ttab\x01":    `new\nline\ttab\x01`,
		`registry/app@sha256:1`: `registry/app@sha256:1`,
	} {
		if got := analysis.Escape(in); got != want {
			t.Errorf("Escape(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRenderEscapesEveryValue(t *testing.T) {
	v := analysis.Values{Hosts: []string{"web-01", "web.02"}, Service: "web", Image: `evil"}) or vector(1) #`,
		PreviousImage: `app:1`, Interval: 90 * time.Second}
	got, err := analysis.Render(`sum(rate(x{host=~"{{.Host}}",service="{{.Service}}",image="{{.Image}}",prev="{{.PreviousImage}}"}[{{.Interval}}]))`, v)
	if err != nil {
		t.Fatal(err)
	}
	want := `sum(rate(x{host=~"web-01|web\\.02",service="web",image="evil\"}) or vector(1) #",prev="app:1"}[1m30s]))`
	if got != want {
		t.Fatalf("Render =\n%s\nwant\n%s", got, want)
	}
	if got := analysis.HostRegexp(nil); got != "$^" {
		t.Errorf("HostRegexp(nil) = %q, want a regexp matching nothing", got)
	}
}

func TestCheckRefusesUnknownFieldsAndBadTemplates(t *testing.T) {
	for _, text := range []string{`up{host="{{.Hostname}}"}`, `up{{`, `{{/* nothing */}}`} {
		if err := analysis.Check(text); err == nil {
			t.Errorf("Check(%q) = nil, want an error", text)
		}
	}
	if err := analysis.Check(`up{host=~"{{.Host}}"}`); err != nil {
		t.Errorf("Check of a valid template: %v", err)
	}
}

func errorRate(threshold float64) *flotillav1.AnalysisQuery {
	return &flotillav1.AnalysisQuery{Name: "error-rate", Query: `errors{service="{{.Service}}",image="{{.Image}}"}`,
		FailWhen: flotillav1.Comparison_COMPARISON_GREATER, Threshold: threshold,
		MinRequestsQuery: `requests{service="{{.Service}}",image="{{.Image}}"}`, MinRequests: 100}
}

func measurement() analysis.Measurement {
	now := time.Unix(1700000000, 0)
	return analysis.Measurement{
		New: analysis.Values{Hosts: []string{"web-01"}, Service: "web", Image: "app:2", PreviousImage: "app:1", Interval: time.Minute}, At: now,
		Old: analysis.Values{Hosts: []string{"web-02"}, Service: "web", Image: "app:1", PreviousImage: "app:1", Interval: time.Minute}, OldAt: now,
	}
}

func TestMeasureVerdicts(t *testing.T) {
	f, url := newFakeProm(t)
	p, err := analysis.NewPrometheus(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	const q, rq = `errors{service="web",image="app:2"}`, `requests{service="web",image="app:2"}`
	tests := []struct {
		name      string
		value     []string
		requests  string
		scalar    bool
		verdict   flotillav1.AnalysisVerdict
		wantValue float64
		msg       string
	}{
		{"below the threshold", []string{"0.004"}, "500", false, flotillav1.AnalysisVerdict_ANALYSIS_VERDICT_PASS, 0.004, "fails when > 0.01"},
		{"above it", []string{"0.05"}, "500", false, flotillav1.AnalysisVerdict_ANALYSIS_VERDICT_FAIL, 0.05, "0.05 > 0.01"},
		{"the worst series counts", []string{"0.001", "0.03", "NaN"}, "500", false, flotillav1.AnalysisVerdict_ANALYSIS_VERDICT_FAIL, 0.03, ""},
		{"a scalar", []string{"0.02"}, "500", true, flotillav1.AnalysisVerdict_ANALYSIS_VERDICT_FAIL, 0.02, ""},
		{"the threshold itself passes", []string{"0.01"}, "500", false, flotillav1.AnalysisVerdict_ANALYSIS_VERDICT_PASS, 0.01, ""},
		{"no series", nil, "500", false, flotillav1.AnalysisVerdict_ANALYSIS_VERDICT_INCONCLUSIVE, 0, "no series"},
		{"NaN only", []string{"NaN"}, "500", false, flotillav1.AnalysisVerdict_ANALYSIS_VERDICT_INCONCLUSIVE, 0, "NaN"},
		{"too few requests", []string{"0"}, "99", false, flotillav1.AnalysisVerdict_ANALYSIS_VERDICT_INCONCLUSIVE, 0, "fewer than min_requests 100"},
		{"no request series", []string{"0"}, "", false, flotillav1.AnalysisVerdict_ANALYSIS_VERDICT_INCONCLUSIVE, 0, "min_requests_query"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.scalar {
				f.scalar(q, tt.value[0])
			} else {
				f.vector(q, tt.value...)
			}
			if tt.requests == "" {
				f.vector(rq)
			} else {
				f.vector(rq, tt.requests)
			}
			res := analysis.Measure(context.Background(), p, errorRate(0.01), measurement())
			if res.GetVerdict() != tt.verdict || res.GetValue() != tt.wantValue || !strings.Contains(res.GetMessage(), tt.msg) {
				t.Fatalf("Measure = %s %v %q; want %s %v containing %q", res.GetVerdict(), res.GetValue(), res.GetMessage(), tt.verdict, tt.wantValue, tt.msg)
			}
			if res.GetPromql() != q || res.GetQuery() != "error-rate" {
				t.Fatalf("result names %q %q", res.GetQuery(), res.GetPromql())
			}
		})
	}
}

func TestMeasureLowerBound(t *testing.T) {
	f, url := newFakeProm(t)
	p, _ := analysis.NewPrometheus(url, nil)
	q := &flotillav1.AnalysisQuery{Name: "success", Query: `ok{image="{{.Image}}"}`, FailWhen: flotillav1.Comparison_COMPARISON_LESS, Threshold: 0.99}
	f.vector(`ok{image="app:2"}`, "0.999", "0.98")
	if res := analysis.Measure(context.Background(), p, q, measurement()); res.GetVerdict() != flotillav1.AnalysisVerdict_ANALYSIS_VERDICT_FAIL || res.GetValue() != 0.98 {
		t.Fatalf("LESS takes the lowest series: %s %v", res.GetVerdict(), res.GetValue())
	}
}

func TestMeasureComparePrevious(t *testing.T) {
	f, url := newFakeProm(t)
	p, _ := analysis.NewPrometheus(url, nil)
	q := &flotillav1.AnalysisQuery{Name: "p99", Query: `p99{host=~"{{.Host}}",image="{{.Image}}"}`,
		ComparePrevious: &flotillav1.PreviousComparison{MaxRatio: 1.5, MaxDelta: 0.2}}
	f.vector(`p99{host=~"web-02",image="app:1"}`, "0.3")
	for _, tt := range []struct {
		value   string
		verdict flotillav1.AnalysisVerdict
	}{{"0.44", flotillav1.AnalysisVerdict_ANALYSIS_VERDICT_PASS}, {"0.46", flotillav1.AnalysisVerdict_ANALYSIS_VERDICT_FAIL}} {
		f.vector(`p99{host=~"web-01",image="app:2"}`, tt.value)
		res := analysis.Measure(context.Background(), p, q, measurement())
		// The limit is the lower of 0.3*1.5 and 0.3+0.2.
		if res.GetVerdict() != tt.verdict || res.GetThreshold() < 0.449 || res.GetThreshold() > 0.451 {
			t.Fatalf("new %s vs 0.3: %s threshold %v %q, want %s with limit 0.45", tt.value, res.GetVerdict(), res.GetThreshold(), res.GetMessage(), tt.verdict)
		}
	}
	f.vector(`p99{host=~"web-02",image="app:1"}`)
	if res := analysis.Measure(context.Background(), p, q, measurement()); res.GetVerdict() != flotillav1.AnalysisVerdict_ANALYSIS_VERDICT_INCONCLUSIVE ||
		!strings.Contains(res.GetMessage(), "previous version") {
		t.Fatalf("no data on the previous version: %s %q, want INCONCLUSIVE", res.GetVerdict(), res.GetMessage())
	}
}

func TestMeasureUnreachableAndErrorsAreInconclusive(t *testing.T) {
	f, url := newFakeProm(t)
	p, _ := analysis.NewPrometheus(url, nil)
	q := &flotillav1.AnalysisQuery{Name: "e", Query: `unknown_to_the_fake`, FailWhen: flotillav1.Comparison_COMPARISON_GREATER, Threshold: 1}
	if res := analysis.Measure(context.Background(), p, q, measurement()); res.GetVerdict() != flotillav1.AnalysisVerdict_ANALYSIS_VERDICT_INCONCLUSIVE ||
		!strings.Contains(res.GetMessage(), "400") {
		t.Fatalf("an error answer: %s %q, want INCONCLUSIVE naming the HTTP 400", res.GetVerdict(), res.GetMessage())
	}
	f.set("matrix", `{"resultType":"matrix","result":[]}`)
	q.Query = "matrix"
	if res := analysis.Measure(context.Background(), p, q, measurement()); res.GetVerdict() != flotillav1.AnalysisVerdict_ANALYSIS_VERDICT_INCONCLUSIVE ||
		!strings.Contains(res.GetMessage(), "instant vector") {
		t.Fatalf("a range result: %s %q, want INCONCLUSIVE", res.GetVerdict(), res.GetMessage())
	}
	down, _ := analysis.NewPrometheus("http://127.0.0.1:1", nil)
	q.Query = "up"
	if res := analysis.Measure(context.Background(), down, q, measurement()); res.GetVerdict() != flotillav1.AnalysisVerdict_ANALYSIS_VERDICT_INCONCLUSIVE {
		t.Fatalf("Prometheus unreachable: %s %q, want INCONCLUSIVE", res.GetVerdict(), res.GetMessage())
	}
	if _, err := analysis.Pick(nil, analysis.Highest); !errors.Is(err, analysis.ErrNoData) {
		t.Fatalf("Pick(nil) = %v, want ErrNoData", err)
	}
}
