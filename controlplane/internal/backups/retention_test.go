package backups

import (
	"reflect"
	"testing"
	"time"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/controlplane/internal/store"
)

// daily makes n verified backups, one a day, the newest at last.
func daily(n int, last time.Time) []store.Backup {
	var out []store.Backup
	for i := 0; i < n; i++ {
		at := last.AddDate(0, 0, -i)
		out = append(out, store.Backup{ID: at.Format("2006-01-02"), FinishedAt: at, Verified: true})
	}
	return out
}

func keptIDs(s Selection) []string {
	var out []string
	for _, k := range s.Keep {
		out = append(out, k.Backup.ID)
	}
	return out
}

func TestSelectGrandfatherFatherSon(t *testing.T) {
	// 100 daily backups ending on Monday 7 December 2026 (ISO week 50).
	backups := daily(100, utc("2026-12-07T02:05:00Z"))
	sel := Select(backups, &flotillav1.BackupRetention{KeepLast: 2, KeepDaily: 3, KeepWeekly: 2, KeepMonthly: 3}, time.UTC)
	want := []string{
		"2026-12-07", // last, daily, week 50, December, newest verified
		"2026-12-06", // last, daily, week 49 (a Sunday)
		"2026-12-05", // daily
		"2026-11-30", // November
		"2026-10-31", // October
	}
	if got := keptIDs(sel); !reflect.DeepEqual(got, want) {
		t.Errorf("kept %v, want %v", got, want)
	}
	if got, want := sel.Keep[0].Reasons, []string{"last", "daily", "weekly", "monthly", "newest verified"}; !reflect.DeepEqual(got, want) {
		t.Errorf("the newest is kept by %v, want %v", got, want)
	}
	if len(sel.Prune) != 95 || sel.Prune[0].ID != "2026-12-04" {
		t.Errorf("pruned %d starting with %v, want 95 starting with 2026-12-04", len(sel.Prune), sel.Prune[0].ID)
	}
}

func TestSelectNeverPrunesTheNewestVerified(t *testing.T) {
	backups := daily(3, utc("2026-12-07T02:05:00Z"))
	backups[0].Verified = false                       // the newest failed its check
	backups[1].PrunedAt = utc("2026-12-07T03:00:00Z") // already gone
	sel := Select(backups, &flotillav1.BackupRetention{}, time.UTC)
	if got, want := keptIDs(sel), []string{"2026-12-05"}; !reflect.DeepEqual(got, want) {
		t.Errorf("kept %v, want %v (the newest verified, whatever the rules)", got, want)
	}
	if len(sel.Prune) != 1 || sel.Prune[0].ID != "2026-12-07" {
		t.Errorf("pruned %v, want the unverified 2026-12-07 alone", sel.Prune)
	}
}

func TestSelectReadsDaysInTheZone(t *testing.T) {
	// 23:30 and 00:30 UTC are the same day in New York (18:30 and 19:30).
	backups := []store.Backup{
		{ID: "late", FinishedAt: utc("2026-12-08T00:30:00Z"), Verified: true},
		{ID: "early", FinishedAt: utc("2026-12-07T23:30:00Z"), Verified: true},
	}
	ny, _ := time.LoadLocation("America/New_York")
	if got := keptIDs(Select(backups, &flotillav1.BackupRetention{KeepDaily: 2}, ny)); !reflect.DeepEqual(got, []string{"late"}) {
		t.Errorf("New York days: kept %v, want [late]", got)
	}
	if got := keptIDs(Select(backups, &flotillav1.BackupRetention{KeepDaily: 2}, time.UTC)); len(got) != 2 {
		t.Errorf("UTC days: kept %v, want both", got)
	}
}
