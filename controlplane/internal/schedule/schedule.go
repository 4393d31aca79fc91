package schedule

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// parser reads the five standard fields and the @daily-style descriptors.
var parser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// horizon bounds the search for a slot: an expression with no slot within
// it (0 0 31 2 *) never fires.
const horizon = 5 * 366 * 24 * time.Hour

// ErrNeverFires is returned by Parse for an expression that names no
// instant that exists (the 31st of February, say).
var ErrNeverFires = errors.New("never fires: no date matches it")

// Schedule is a parsed cron expression in a time zone.
type Schedule struct {
	expr string
	loc  *time.Location
	// wall is the expression read in UTC, which has no daylight-saving
	// changes: its slots are wall-clock times of loc written as UTC.
	wall cron.Schedule
}

// Parse reads a five-field cron expression (minute hour day-of-month month
// day-of-week, or a descriptor such as @daily) in the IANA time zone zone
// ("" is UTC). An expression that never fires returns an error wrapping
// ErrNeverFires.
func Parse(expr, zone string) (*Schedule, error) {
	loc, err := LoadZone(zone)
	if err != nil {
		return nil, err
	}
	e := strings.TrimSpace(expr)
	switch {
	case e == "":
		return nil, errors.New("empty cron expression")
	case strings.HasPrefix(e, "TZ=") || strings.HasPrefix(e, "CRON_TZ="):
		return nil, errors.New("the time zone goes in time_zone, not in the expression")
	case strings.HasPrefix(e, "@every"):
		return nil, errors.New("@every is not a calendar schedule; write minute hour day-of-month month day-of-week")
	}
	wall, err := parser.Parse(e)
	if err != nil {
		return nil, fmt.Errorf("not a cron expression (minute hour day-of-month month day-of-week): %v", err)
	}
	s := &Schedule{expr: e, loc: loc, wall: wall}
	// Every calendar pattern repeats within 28 years; one that has no slot
	// in the next five from a leap year's start names an impossible date.
	if s.wall.Next(time.Date(2028, 1, 1, 0, 0, 0, 0, time.UTC).Add(-time.Second)).IsZero() {
		return nil, ErrNeverFires
	}
	return s, nil
}

// LoadZone loads an IANA time zone by name; "" and "UTC" are UTC.
func LoadZone(zone string) (*time.Location, error) {
	if zone == "" || zone == "UTC" {
		return time.UTC, nil
	}
	if zone == "Local" || strings.HasPrefix(zone, "/") || strings.Contains(zone, "..") {
		return nil, fmt.Errorf("%q is not an IANA time zone name (e.g. Europe/Paris)", zone)
	}
	loc, err := time.LoadLocation(zone)
	if err != nil {
		return nil, fmt.Errorf("%q is not an IANA time zone name (e.g. Europe/Paris)", zone)
	}
	return loc, nil
}

// String is the expression as given (trimmed).
func (s *Schedule) String() string { return s.expr }

// Location is the schedule's time zone.
func (s *Schedule) Location() *time.Location { return s.loc }

// Next returns the first slot strictly after t, or the zero time when there
// is none within five years.
func (s *Schedule) Next(t time.Time) time.Time {
	w := toWall(t, s.loc)
	limit := t.Add(horizon)
	for {
		w = s.wall.Next(w)
		if w.IsZero() {
			return time.Time{}
		}
		at := fromWall(w, s.loc)
		if at.After(limit) {
			return time.Time{}
		}
		// A wall time the clocks went back over maps to its first
		// instant, which may lie before t: it already ran.
		if at.After(t) {
			return at
		}
	}
}

// Latest returns the last slot in (after, upTo], or the zero time when
// there is none: the one run a scheduler that was away owes, however many
// slots it missed. It looks back over growing windows from upTo, so a long
// absence costs no walk over every missed slot.
func (s *Schedule) Latest(after, upTo time.Time) time.Time {
	for window := 48 * time.Hour; ; window *= 4 {
		from := upTo.Add(-window)
		if !from.After(after) {
			from = after
		}
		var last time.Time
		for n := s.Next(from); !n.IsZero() && !n.After(upTo); n = s.Next(n) {
			last = n
		}
		if !last.IsZero() || from.Equal(after) {
			return last
		}
	}
}

// toWall writes t's wall clock in loc as a UTC time.
func toWall(t time.Time, loc *time.Location) time.Time {
	l := t.In(loc)
	return time.Date(l.Year(), l.Month(), l.Day(), l.Hour(), l.Minute(), l.Second(), l.Nanosecond(), time.UTC)
}

// fromWall is the instant of a wall-clock time of loc written as UTC. A
// wall time in a gap (clocks went forward) is shifted by the gap's length,
// as time.Date does; one that occurs twice (clocks went back) is its first
// occurrence.
func fromWall(w time.Time, loc *time.Location) time.Time {
	at := time.Date(w.Year(), w.Month(), w.Day(), w.Hour(), w.Minute(), w.Second(), w.Nanosecond(), loc)
	if !toWall(at, loc).Equal(w) {
		// In a gap: the clocks went forward, from the smaller offset to
		// the larger. Read w with the offset in force before the gap.
		_, before := at.Add(-3 * time.Hour).In(loc).Zone()
		_, after := at.Add(3 * time.Hour).In(loc).Zone()
		return w.Add(-time.Duration(min(before, after)) * time.Second).In(loc)
	}
	// time.Date may pick either occurrence of a repeated wall time; an
	// earlier instant with the same wall clock is the first one.
	for _, back := range []time.Duration{30 * time.Minute, time.Hour, 2 * time.Hour} {
		if e := at.Add(-back); toWall(e, loc).Equal(w) {
			return e
		}
	}
	return at
}
