package stats

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// Summary describes a sample of durations.
type Summary struct {
	N                       int
	Min, P50, P95, P99, Max time.Duration
}

// Summarize sorts a copy of samples and returns their summary; the zero
// Summary for an empty sample.
func Summarize(samples []time.Duration) Summary {
	if len(samples) == 0 {
		return Summary{}
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	return Summary{
		N:   len(s),
		Min: s[0],
		P50: Percentile(s, 50),
		P95: Percentile(s, 95),
		P99: Percentile(s, 99),
		Max: s[len(s)-1],
	}
}

// Percentile returns the nearest-rank p-th percentile (0 < p ≤ 100) of
// sorted: the smallest sample such that at least p percent of the samples
// are less than or equal to it. It returns 0 for an empty sample.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(n)))
	rank = min(max(rank, 1), n)
	return sorted[rank-1]
}

// String is the summary as the results file shows it.
func (s Summary) String() string {
	if s.N == 0 {
		return "no samples"
	}
	return fmt.Sprintf("p50 %s, p95 %s, p99 %s, max %s (n=%d)",
		Millis(s.P50), Millis(s.P95), Millis(s.P99), Millis(s.Max), s.N)
}

// Millis formats d in milliseconds with a precision that suits its size:
// "0.42 ms", "12.3 ms", "1520 ms".
func Millis(d time.Duration) string {
	ms := float64(d) / float64(time.Millisecond)
	switch {
	case math.Abs(ms) < 10:
		return fmt.Sprintf("%.2f ms", ms)
	case math.Abs(ms) < 1000:
		return fmt.Sprintf("%.1f ms", ms)
	default:
		return fmt.Sprintf("%.0f ms", ms)
	}
}

// Seconds formats d in seconds with two decimals: "12.34 s".
func Seconds(d time.Duration) string {
	return fmt.Sprintf("%.2f s", d.Seconds())
}
