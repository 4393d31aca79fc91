package backups

import (
	"fmt"
	"slices"
	"time"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/controlplane/internal/schedule"
	"flotilla.dev/controlplane/internal/store"
)

// Selection is what a prune of one database on one host keeps and removes.
type Selection struct {
	// Keep are the backups kept, newest first, each with the rules that
	// keep it.
	Keep []Kept
	// Prune are the backups a prune removes, newest first.
	Prune []store.Backup
}

// Kept is a kept backup and why.
type Kept struct {
	Backup store.Backup
	// Reasons are the rules that keep it: "last", "daily", "weekly",
	// "monthly", "newest verified".
	Reasons []string
}

// Select applies a retention to the backups of one database on one host,
// reading days, weeks and months in loc. Only verified backups that are
// not yet pruned are recovery points: the rules count them alone, and an
// unverified backup is always pruned. The newest verified backup is kept
// whatever the rules say, so a prune never leaves a database without one.
func Select(backups []store.Backup, r *flotillav1.BackupRetention, loc *time.Location) Selection {
	var live []store.Backup
	for _, b := range backups {
		if b.PrunedAt.IsZero() {
			live = append(live, b)
		}
	}
	slices.SortStableFunc(live, func(a, b store.Backup) int { return b.FinishedAt.Compare(a.FinishedAt) })
	reasons := make([][]string, len(live))
	keepBy := func(rule string, n uint32, bucket func(time.Time) string) {
		seen := map[string]bool{}
		for i, b := range live {
			if uint32(len(seen)) >= n {
				return
			}
			if !b.Verified {
				continue
			}
			k := bucket(b.FinishedAt.In(loc))
			if !seen[k] {
				seen[k] = true
				reasons[i] = append(reasons[i], rule)
			}
		}
	}
	count := 0
	keepBy("last", r.GetKeepLast(), func(time.Time) string { count++; return fmt.Sprint(count) })
	keepBy("daily", r.GetKeepDaily(), func(t time.Time) string { return t.Format("2006-01-02") })
	keepBy("weekly", r.GetKeepWeekly(), func(t time.Time) string { y, w := t.ISOWeek(); return fmt.Sprintf("%d-W%02d", y, w) })
	keepBy("monthly", r.GetKeepMonthly(), func(t time.Time) string { return t.Format("2006-01") })
	for i, b := range live {
		if b.Verified {
			reasons[i] = append(reasons[i], "newest verified")
			break
		}
	}
	var sel Selection
	for i, b := range live {
		if len(reasons[i]) > 0 {
			sel.Keep = append(sel.Keep, Kept{Backup: b, Reasons: reasons[i]})
		} else {
			sel.Prune = append(sel.Prune, b)
		}
	}
	return sel
}

// RecoveryPoints states a retention as what can still be recovered with it
// at the schedule s, e.g. "each of the last 7 backups (about 7 days at
// this schedule)".
func RecoveryPoints(r *flotillav1.BackupRetention, s *schedule.Schedule) []string {
	var out []string
	if n := r.GetKeepLast(); n > 0 {
		line := fmt.Sprintf("each of the last %d backups", n)
		if span := period(s) * time.Duration(n); span > 0 {
			line += fmt.Sprintf(" (about %s at this schedule)", humanSpan(span))
		}
		out = append(out, line)
	}
	for _, rule := range []struct {
		n          uint32
		unit, plur string
	}{{r.GetKeepDaily(), "day", "days"}, {r.GetKeepWeekly(), "week", "weeks"}, {r.GetKeepMonthly(), "month", "months"}} {
		switch {
		case rule.n == 1:
			out = append(out, fmt.Sprintf("the newest backup of the last %s that has one", rule.unit))
		case rule.n > 1:
			out = append(out, fmt.Sprintf("one backup a %s for the last %d %s that have one", rule.unit, rule.n, rule.plur))
		}
	}
	return append(out, "the newest verified backup, however old")
}

// period is the schedule's usual interval: the gap between two slots of a
// reference week (zero when it has no two slots in a year).
func period(s *schedule.Schedule) time.Duration {
	if s == nil {
		return 0
	}
	ref := time.Date(2026, 1, 5, 0, 0, 0, 0, s.Location())
	a := s.Next(ref)
	if a.IsZero() {
		return 0
	}
	b := s.Next(a)
	if b.IsZero() || b.Sub(a) > 366*24*time.Hour {
		return 0
	}
	return b.Sub(a)
}

func humanSpan(d time.Duration) string {
	switch day := 24 * time.Hour; {
	case d >= 2*day:
		return fmt.Sprintf("%d days", (d+day/2)/day)
	case d >= 2*time.Hour:
		return fmt.Sprintf("%d hours", (d+time.Hour/2)/time.Hour)
	case d >= 2*time.Minute:
		return fmt.Sprintf("%d minutes", (d+time.Minute/2)/time.Minute)
	default:
		return d.Round(time.Second).String()
	}
}
