package backups

import (
	"strings"
	"testing"
	"time"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/controlplane/internal/store"
)

// What a prune makes impossible to recover: a pruned dump is its instant;
// pruned base backups older than the oldest kept one lose the span up to
// it (their WAL goes too), those between kept ones nothing.
func TestLost(t *testing.T) {
	day := func(d int) time.Time { return time.Date(2026, 11, d, 2, 0, 0, 0, time.UTC) }
	backups := func(typ flotillav1.BackupType) []store.Backup {
		var out []store.Backup
		for d := 1; d <= 10; d++ {
			out = append(out, store.Backup{AgentID: "db-1", Name: "shop-" + day(d).Format("0102"), StartedAt: day(d),
				FinishedAt: day(d).Add(10 * time.Minute), Verified: d != 2, Type: int32(typ)})
		}
		return out
	}
	// keep_last 3: days 10, 9 and 8 stay; 1 to 7 go (2 is unverified:
	// never a recovery point).
	r := &flotillav1.BackupRetention{KeepLast: 3}

	dumps := Select(backups(flotillav1.BackupType_BACKUP_TYPE_DUMP), r, time.UTC)
	lost := Lost(dumps, flotillav1.BackupType_BACKUP_TYPE_DUMP)
	if len(lost) != 6 {
		t.Fatalf("dumps: lost %v, want the 6 verified pruned ones", lost)
	}
	for _, l := range lost {
		if !l.GetFrom().AsTime().Equal(l.GetUntil().AsTime()) || !strings.HasPrefix(l.GetDescription(), "the state of ") || l.GetAgentId() != "db-1" {
			t.Errorf("a dump's loss = %v, want one instant", l)
		}
	}

	base := Select(backups(flotillav1.BackupType_BACKUP_TYPE_BASE), r, time.UTC)
	lost = Lost(base, flotillav1.BackupType_BACKUP_TYPE_BASE)
	if len(lost) != 1 {
		t.Fatalf("base backups: lost %v, want one span", lost)
	}
	if l := lost[0]; !l.GetFrom().AsTime().Equal(day(1)) || !l.GetUntil().AsTime().Equal(day(8)) ||
		!strings.Contains(l.GetDescription(), "shop-1101, shop-1103, shop-1104, shop-1105, shop-1106, shop-1107 and the WAL before shop-1108") {
		t.Errorf("base backups' loss = %v, want the span from the 1st to the 8th", l)
	}
	// keep_weekly 3 also keeps the 1st (the newest of its ISO week): the
	// base backups pruned between kept ones lose nothing, the WAL from the
	// 1st still reaches every instant.
	weekly := Select(backups(flotillav1.BackupType_BACKUP_TYPE_BASE), &flotillav1.BackupRetention{KeepLast: 3, KeepWeekly: 3}, time.UTC)
	if got := Lost(weekly, flotillav1.BackupType_BACKUP_TYPE_BASE); len(weekly.Prune) == 0 || len(got) != 0 {
		t.Errorf("pruned between kept base backups (%d): lost %v, want nothing", len(weekly.Prune), got)
	}
}
