package stats

import (
	"testing"
	"time"
)

func ms(v ...int) []time.Duration {
	out := make([]time.Duration, len(v))
	for i, x := range v {
		out[i] = time.Duration(x) * time.Millisecond
	}
	return out
}

func TestPercentileNearestRank(t *testing.T) {
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(i+1) * time.Millisecond
	}
	cases := []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one sample is every percentile", ms(7), 99, 7 * time.Millisecond},
		{"p50 of 1..100", hundred, 50, 50 * time.Millisecond},
		{"p95 of 1..100", hundred, 95, 95 * time.Millisecond},
		{"p99 of 1..100", hundred, 99, 99 * time.Millisecond},
		{"p100 is the max", hundred, 100, 100 * time.Millisecond},
		{"tiny p is the min", hundred, 0.001, 1 * time.Millisecond},
		// Nearest rank: ceil(0.5*4) = 2nd sample, not an interpolation.
		{"p50 of four", ms(10, 20, 30, 40), 50, 20 * time.Millisecond},
		{"p99 of four is the max", ms(10, 20, 30, 40), 99, 40 * time.Millisecond},
		{"p75 of four", ms(10, 20, 30, 40), 75, 30 * time.Millisecond},
	}
	for _, c := range cases {
		if got := Percentile(c.sorted, c.p); got != c.want {
			t.Errorf("%s: Percentile(p=%v) = %v, want %v", c.name, c.p, got, c.want)
		}
	}
}

func TestSummarizeSortsACopy(t *testing.T) {
	in := ms(30, 10, 50, 20, 40)
	s := Summarize(in)
	want := Summary{N: 5, Min: 10 * time.Millisecond, P50: 30 * time.Millisecond, P95: 50 * time.Millisecond,
		P99: 50 * time.Millisecond, Max: 50 * time.Millisecond}
	if s != want {
		t.Errorf("Summarize = %+v, want %+v", s, want)
	}
	if in[0] != 30*time.Millisecond {
		t.Errorf("Summarize reordered its input: %v", in)
	}
	if (Summarize(nil) != Summary{}) {
		t.Errorf("Summarize(nil) = %+v, want the zero summary", Summarize(nil))
	}
}

func TestFormatting(t *testing.T) {
	cases := []struct{ got, want string }{
		{Millis(420 * time.Microsecond), "0.42 ms"},
		{Millis(12340 * time.Microsecond), "12.3 ms"},
		{Millis(1520 * time.Millisecond), "1520 ms"},
		{Seconds(12346 * time.Millisecond), "12.35 s"},
		{Summarize(ms(1, 2, 3)).String(), "p50 2.00 ms, p95 3.00 ms, p99 3.00 ms, max 3.00 ms (n=3)"},
		{Summary{}.String(), "no samples"},
	}
	for _, c := range cases {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
}
