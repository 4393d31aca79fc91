package schedule

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func mustParse(t *testing.T, expr, zone string) *Schedule {
	t.Helper()
	s, err := Parse(expr, zone)
	if err != nil {
		t.Fatalf("Parse(%q, %q): %v", expr, zone, err)
	}
	return s
}

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestParseRefuses(t *testing.T) {
	for _, tc := range []struct{ expr, zone, want string }{
		{"", "", "empty"},
		{"0 2 * *", "", "not a cron expression"},
		{"61 2 * * *", "", "not a cron expression"},
		{"0 0 31 2 *", "", "never fires"},
		{"0 0 30 2 *", "Europe/Paris", "never fires"},
		{"@every 1h", "", "@every"},
		{"CRON_TZ=UTC 0 2 * * *", "", "time_zone"},
		{"0 2 * * *", "Mars/Olympus", "IANA"},
		{"0 2 * * *", "Local", "IANA"},
		{"0 2 * * *", "/etc/localtime", "IANA"},
	} {
		_, err := Parse(tc.expr, tc.zone)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q, %q) = %v, want an error containing %q", tc.expr, tc.zone, err, tc.want)
		}
	}
	if _, err := Parse("0 0 31 2 *", ""); !errors.Is(err, ErrNeverFires) {
		t.Errorf("the 31st of February: %v, want ErrNeverFires", err)
	}
	// The 29th of February exists once in four years: it fires.
	s := mustParse(t, "0 0 29 2 *", "")
	if got, want := s.Next(utc("2026-12-07T00:00:00Z")), utc("2028-02-29T00:00:00Z"); !got.Equal(want) {
		t.Errorf("29 February: next %v, want %v", got, want)
	}
}

func TestNextInZone(t *testing.T) {
	s := mustParse(t, "0 2 * * *", "Europe/Paris")
	// 02:00 in Paris in winter is 01:00 UTC.
	if got, want := s.Next(utc("2026-12-07T08:00:00Z")), utc("2026-12-08T01:00:00Z"); !got.Equal(want) {
		t.Errorf("next = %v, want %v", got, want)
	}
	// Strictly after: a slot is never its own successor.
	if got, want := s.Next(utc("2026-12-08T01:00:00Z")), utc("2026-12-09T01:00:00Z"); !got.Equal(want) {
		t.Errorf("next after a slot = %v, want %v", got, want)
	}
	weekly := mustParse(t, "0 4 * * 0", "")
	if got, want := weekly.Next(utc("2026-12-07T08:00:00Z")), utc("2026-12-13T04:00:00Z"); !got.Equal(want) {
		t.Errorf("weekly next = %v, want %v (a Sunday)", got, want)
	}
}

func TestDaylightSavingForward(t *testing.T) {
	// New York, 8 March 2026: 02:00 EST becomes 03:00 EDT; 02:30 does not
	// exist that night. It runs an hour later, at 03:30 EDT, once.
	s := mustParse(t, "30 2 * * *", "America/New_York")
	got := s.Next(utc("2026-03-07T12:00:00Z"))
	if want := utc("2026-03-08T07:30:00Z"); !got.Equal(want) {
		t.Errorf("the skipped 02:30 runs at %v, want %v (03:30 EDT)", got, want)
	}
	if got, want := s.Next(got), utc("2026-03-09T06:30:00Z"); !got.Equal(want) {
		t.Errorf("the day after: %v, want %v (02:30 EDT)", got, want)
	}
}

func TestDaylightSavingBack(t *testing.T) {
	// New York, 1 November 2026: 02:00 EDT becomes 01:00 EST; 01:30
	// happens twice. It runs once, at the first.
	s := mustParse(t, "30 1 * * *", "America/New_York")
	first := s.Next(utc("2026-10-31T12:00:00Z"))
	if want := utc("2026-11-01T05:30:00Z"); !first.Equal(want) {
		t.Fatalf("01:30 runs at %v, want %v (01:30 EDT)", first, want)
	}
	if got, want := s.Next(first), utc("2026-11-02T06:30:00Z"); !got.Equal(want) {
		t.Errorf("after the first 01:30: %v, want %v (the next day, not 01:30 EST)", got, want)
	}
	// Every 15 minutes across the repeated hour: each wall time once.
	q := mustParse(t, "*/15 * * * *", "America/New_York")
	seen := map[string]int{}
	for n := q.Next(utc("2026-11-01T04:00:00Z")); n.Before(utc("2026-11-01T08:00:00Z")); n = q.Next(n) {
		seen[n.In(q.Location()).Format("15:04")]++
	}
	for wall, count := range seen {
		if count != 1 {
			t.Errorf("%s ran %d times", wall, count)
		}
	}
}

func TestLatestRunsMissedSlotsOnce(t *testing.T) {
	s := mustParse(t, "0 2 * * *", "UTC")
	// Away for ten days: one slot is owed, the latest.
	got := s.Latest(utc("2026-11-27T02:00:00Z"), utc("2026-12-07T08:00:00Z"))
	if want := utc("2026-12-07T02:00:00Z"); !got.Equal(want) {
		t.Errorf("Latest = %v, want %v", got, want)
	}
	if got := s.Latest(utc("2026-12-07T02:00:00Z"), utc("2026-12-07T08:00:00Z")); !got.IsZero() {
		t.Errorf("nothing owed: Latest = %v, want zero", got)
	}
	// A sparse schedule (yearly) missed long ago is still found.
	y := mustParse(t, "0 0 1 1 *", "UTC")
	if got, want := y.Latest(utc("2020-06-01T00:00:00Z"), utc("2026-12-07T00:00:00Z")), utc("2026-01-01T00:00:00Z"); !got.Equal(want) {
		t.Errorf("yearly Latest = %v, want %v", got, want)
	}
	// A minutely schedule missed for a year costs no walk over each minute.
	m := mustParse(t, "* * * * *", "UTC")
	if got, want := m.Latest(utc("2025-12-07T00:00:00Z"), utc("2026-12-07T00:00:30Z")), utc("2026-12-07T00:00:00Z"); !got.Equal(want) {
		t.Errorf("minutely Latest = %v, want %v", got, want)
	}
}
