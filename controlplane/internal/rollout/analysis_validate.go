package rollout

import (
	"net/url"
	"regexp"
	"strconv"
	"time"

	flotillav1 "flotilla.dev/gen/flotilla/v1"
	"flotilla.dev/pkg/validate"

	"flotilla.dev/controlplane/internal/analysis"
)

// Analysis input limits.
const (
	maxAnalysisQueries = 20
	maxQueryText       = 4096
	maxConsecutive     = 100
	maxInterval        = time.Hour
)

var queryNameRE = regexp.MustCompile(`^[a-z0-9_-]{1,63}$`)

// validateAnalysis checks a strategy's analysis; prefix names it in errors
// (e.g. "strategy.analysis").
func validateAnalysis(prefix string, a *flotillav1.Analysis) error {
	if u := a.GetPrometheusUrl(); u != "" {
		parsed, err := url.Parse(u)
		if len(u) > maxHealthURL {
			return invalid(prefix+".prometheus_url", "longer than %d bytes", maxHealthURL)
		}
		if err != nil || (parsed.Scheme != "http" && parsed.Scheme != "https") || parsed.Host == "" {
			return invalid(prefix+".prometheus_url", "%s is not an http(s) URL", validate.Quote(u))
		}
	}
	qs := a.GetQueries()
	if len(qs) == 0 || len(qs) > maxAnalysisQueries {
		return invalid(prefix+".queries", "1 to %d queries required, got %d", maxAnalysisQueries, len(qs))
	}
	names := make(map[string]bool, len(qs))
	for i, q := range qs {
		if err := validateQuery(fieldIndex(prefix+".queries", i), q); err != nil {
			return err
		}
		if names[q.GetName()] {
			return invalid(fieldIndex(prefix+".queries", i)+".name", "%q is used by another query", q.GetName())
		}
		names[q.GetName()] = true
	}
	if d := a.GetInterval(); d != nil {
		v, err := validate.Duration(d)
		if err != nil || v < time.Second || v > maxInterval {
			return invalid(prefix+".interval", "must be 1s-%s, got %s", maxInterval, d.AsDuration())
		}
	}
	if d := a.GetBake(); d != nil {
		v, err := validate.Duration(d)
		if err != nil || v < 0 || v > maxDuration {
			return invalid(prefix+".bake", "must be between 0s and %s, got %s", maxDuration, d.AsDuration())
		}
	}
	for field, n := range map[string]int32{"consecutive_failures": a.GetConsecutiveFailures(), "consecutive_successes": a.GetConsecutiveSuccesses()} {
		if n < 0 || n > maxConsecutive {
			return invalid(prefix+"."+field, "must be 1-%d (0: 1), got %d", maxConsecutive, n)
		}
	}
	if _, ok := flotillav1.InconclusivePolicy_name[int32(a.GetInconclusive())]; !ok {
		return invalid(prefix+".inconclusive", "%d is not an inconclusive policy (PAUSE or FAIL)", a.GetInconclusive())
	}
	return nil
}

func fieldIndex(field string, i int) string {
	return field + "[" + strconv.Itoa(i) + "]"
}

// validateQuery checks one analysis query.
func validateQuery(prefix string, q *flotillav1.AnalysisQuery) error {
	if !queryNameRE.MatchString(q.GetName()) {
		return invalid(prefix+".name", "%q is not a query name ([a-z0-9_-], 1 to 63 characters)", q.GetName())
	}
	for field, text := range map[string]string{"query": q.GetQuery(), "min_requests_query": q.GetMinRequestsQuery()} {
		if text == "" && field == "min_requests_query" {
			continue
		}
		if text == "" || len(text) > maxQueryText {
			return invalid(prefix+"."+field, "required, at most %d bytes", maxQueryText)
		}
		if err := analysis.Check(text); err != nil {
			return invalid(prefix+"."+field, "%v (fields: .Host, .Service, .Image, .PreviousImage, .Interval)", err)
		}
	}
	if q.GetMinRequestsQuery() != "" && !(q.GetMinRequests() > 0) {
		return invalid(prefix+".min_requests", "must be positive with min_requests_query, got %g", q.GetMinRequests())
	}
	if cp := q.GetComparePrevious(); cp != nil {
		if cp.GetMaxRatio() != 0 && !(cp.GetMaxRatio() >= 1) {
			return invalid(prefix+".compare_previous.max_ratio", "must be at least 1 when set, got %g", cp.GetMaxRatio())
		}
		if cp.GetMaxDelta() < 0 || (cp.GetMaxRatio() == 0 && cp.GetMaxDelta() == 0) {
			return invalid(prefix+".compare_previous", "max_ratio (>= 1) or max_delta (> 0) is required")
		}
		return nil
	}
	if _, ok := flotillav1.Comparison_name[int32(q.GetFailWhen())]; !ok || q.GetFailWhen() == flotillav1.Comparison_COMPARISON_UNSPECIFIED {
		return invalid(prefix+".fail_when", "required (GREATER, LESS, GREATER_OR_EQUAL or LESS_OR_EQUAL) unless compare_previous is set")
	}
	return nil
}
