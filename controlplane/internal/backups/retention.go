package backups

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

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
// this schedule)". For base backups (typ BACKUP_TYPE_BASE) the chain base
// backup → WAL makes every instant since the oldest kept base backup
// recoverable, which comes first.
func RecoveryPoints(r *flotillav1.BackupRetention, s *schedule.Schedule, typ flotillav1.BackupType) []string {
	var out []string
	if typ == flotillav1.BackupType_BACKUP_TYPE_BASE {
		line := "any point in time from the start of the oldest kept base backup to the last archived WAL segment"
		if span := retentionSpan(r, s); span > 0 {
			line += fmt.Sprintf(" (about the last %s at this schedule)", humanSpan(span))
		}
		out = append(out, line+", as long as the WAL archive has no gap")
	}
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

// retentionSpan is about how far back the oldest backup r keeps lies at
// schedule s: keep_last slots, or keep_daily days (weeks for a weekly
// schedule: days that have a backup), weeks and months; zero for a
// schedule without a usual interval.
func retentionSpan(r *flotillav1.BackupRetention, s *schedule.Schedule) time.Duration {
	p := period(s)
	if p == 0 {
		return 0
	}
	day := 24 * time.Hour
	span := p * time.Duration(r.GetKeepLast())
	for _, rule := range []struct {
		n    uint32
		unit time.Duration
	}{{r.GetKeepDaily(), day}, {r.GetKeepWeekly(), 7 * day}, {r.GetKeepMonthly(), 30 * day}} {
		span = max(span, time.Duration(rule.n)*max(rule.unit, p))
	}
	return span
}

// Lost is what pruning sel's backups of one host makes impossible to
// recover: each pruned verified dump is an instant; for base backups, the
// span from the oldest pruned one older than the oldest kept one up to
// that kept one (its WAL goes too). typ is the group's backup type.
func Lost(sel Selection, typ flotillav1.BackupType) []*flotillav1.LostRecovery {
	var out []*flotillav1.LostRecovery
	if typ != flotillav1.BackupType_BACKUP_TYPE_BASE {
		for _, b := range sel.Prune {
			if b.Verified {
				at := pointOf(b)
				out = append(out, &flotillav1.LostRecovery{AgentId: b.AgentID, Type: typ, From: timestamppb.New(at), Until: timestamppb.New(at),
					Description: fmt.Sprintf("the state of %s (dump %s)", at.UTC().Format(time.RFC3339), b.Name)})
			}
		}
		return out
	}
	if len(sel.Keep) == 0 {
		return nil
	}
	oldestKept := sel.Keep[0].Backup
	for _, k := range sel.Keep {
		if pointOf(k.Backup).Before(pointOf(oldestKept)) {
			oldestKept = k.Backup
		}
	}
	var gone []store.Backup
	for _, b := range sel.Prune {
		if b.Verified && pointOf(b).Before(pointOf(oldestKept)) {
			gone = append(gone, b)
		}
	}
	if len(gone) == 0 {
		return nil
	}
	slices.SortFunc(gone, func(a, b store.Backup) int { return pointOf(a).Compare(pointOf(b)) })
	names := make([]string, len(gone))
	for i, b := range gone {
		names[i] = b.Name
	}
	from, until := pointOf(gone[0]), pointOf(oldestKept)
	return []*flotillav1.LostRecovery{{AgentId: oldestKept.AgentID, Type: typ, From: timestamppb.New(from), Until: timestamppb.New(until),
		Description: fmt.Sprintf("any point in time from %s to %s: base backups %s and the WAL before %s (the oldest kept) are deleted",
			from.UTC().Format(time.RFC3339), until.UTC().Format(time.RFC3339), strings.Join(names, ", "), oldestKept.Name)}}
}

// pointOf is the instant a backup recovers to: its start (a dump's
// snapshot, a base backup's checkpoint), else its end when the catalog has
// no start.
func pointOf(b store.Backup) time.Time {
	if b.StartedAt.IsZero() {
		return b.FinishedAt
	}
	return b.StartedAt
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
