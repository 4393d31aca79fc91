package schedule

import (
	"testing"
	"time"
)

// FuzzParse: any expression and zone either parse or are refused, never
// panic; a parsed schedule's next slot is after the instant asked about,
// and its latest owed slot lies in the window asked about.
func FuzzParse(f *testing.F) {
	for _, seed := range []struct{ expr, zone string }{
		{"0 2 * * *", "UTC"}, {"30 2 * * *", "America/New_York"}, {"*/15 1 * * 0", "Europe/Paris"},
		{"0 0 31 2 *", ""}, {"@daily", "Australia/Lord_Howe"}, {"0-59/7 */3 1,15 * 1-5", "Asia/Kolkata"},
	} {
		f.Add(seed.expr, seed.zone, int64(1796630400))
	}
	f.Fuzz(func(t *testing.T, expr, zone string, unix int64) {
		s, err := Parse(expr, zone)
		if err != nil {
			return
		}
		at := time.Unix(unix%(1<<33), 0)
		next := s.Next(at)
		if !next.IsZero() && !next.After(at) {
			t.Fatalf("%q in %q: Next(%v) = %v, not after", expr, zone, at, next)
		}
		upTo := at.Add(72 * time.Hour)
		if l := s.Latest(at, upTo); !l.IsZero() && (!l.After(at) || l.After(upTo)) {
			t.Fatalf("%q in %q: Latest(%v, %v) = %v, outside", expr, zone, at, upTo, l)
		}
	})
}
