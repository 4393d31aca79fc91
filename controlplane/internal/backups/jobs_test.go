package backups

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/controlplane/internal/commands"
	"flotilla.dev/controlplane/internal/store"
)

func backupResult(name string, at time.Time) *flotillav1.CommandResult {
	return &flotillav1.CommandResult{Kind: &flotillav1.CommandResult_Backup{Backup: &flotillav1.BackupResult{
		Database: "shop", Name: name, Type: flotillav1.BackupType_BACKUP_TYPE_DUMP, Verified: true, SizeBytes: 2048,
		Sha256: "cd34", DestinationUri: "s3://flotilla-backups/prod/" + name + ".dump", FinishedAt: timestamppb.New(at),
	}}}
}

// A policy's day: the backup at 02:00, the prune right after it succeeded
// (with the policy's retention in its zone), the drill on Sunday; the
// catalog and the gauges follow each result.
func TestBackupPruneAndDrillJobs(t *testing.T) {
	h := newHarness(t, "db-1")
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg, commands.NewMetrics(reg))
	h.jobs = DefaultJobs(h.st, m, nil)
	h.sched = h.scheduler()
	dest := &flotillav1.BackupDestination{Kind: &flotillav1.BackupDestination_S3{S3: &flotillav1.S3Destination{Bucket: "flotilla-backups", Prefix: "prod"}}}
	putPolicy(t, h.st, &flotillav1.BackupPolicy{Name: "nightly", Selector: "role=db", Database: "shop", Destination: dest,
		TimeZone: "Europe/Paris", Retention: &flotillav1.BackupRetention{KeepDaily: 7}}, utc("2026-12-04T12:00:00Z"))

	// Saturday 02:00 Paris is 01:00Z: the backup.
	h.tick("2026-12-05T01:00:00Z")
	ids := h.cmds.startedIDs()
	if len(ids) != 1 || h.cmds.spec(ids[0]).GetBackup().GetDestination().GetS3().GetBucket() != "flotilla-backups" {
		t.Fatalf("backup run: %v", ids)
	}
	h.cmds.finishWith(ids[0], utc("2026-12-05T01:05:00Z"), func(string) (*flotillav1.CommandResult, bool) {
		return backupResult("shop-20261205T010000Z", utc("2026-12-05T01:05:00Z")), true
	})
	h.tick("2026-12-05T01:05:15Z") // the backup run ends
	h.tick("2026-12-05T01:05:30Z") // the prune follows it
	ids = h.cmds.startedIDs()
	if len(ids) != 2 {
		t.Fatalf("after the backup: started %v, want the prune", ids)
	}
	prune := h.cmds.spec(ids[1]).GetPrune()
	if prune.GetRetention().GetKeepDaily() != 7 || prune.GetRetention().GetTimeZone() != "Europe/Paris" || prune.GetWal() || prune.GetDryRun() {
		t.Errorf("prune = %v", prune)
	}
	// The agent deleted an older, catalogued backup.
	if _, err := h.st.RecordBackup(context.Background(), store.Backup{ID: "cmd-old.db-1", AgentID: "db-1", Database: "shop",
		Name: "shop-20261101T010000Z", FinishedAt: utc("2026-11-01T01:05:00Z"), Verified: true}); err != nil {
		t.Fatal(err)
	}
	h.cmds.finishWith(ids[1], utc("2026-12-05T01:06:00Z"), func(string) (*flotillav1.CommandResult, bool) {
		return &flotillav1.CommandResult{Kind: &flotillav1.CommandResult_Prune{Prune: &flotillav1.PruneResult{Database: "shop",
			Deleted: []*flotillav1.StoredBackup{{Name: "shop-20261101T010000Z"}, {Name: "never-catalogued"}}}}}, true
	})
	h.tick("2026-12-05T01:06:15Z")
	if b, _ := h.st.GetBackup(context.Background(), "cmd-old.db-1"); !b.PrunedAt.Equal(utc("2026-12-05T01:06:00Z")) {
		t.Errorf("the deleted backup's pruned_at = %v", b.PrunedAt)
	}
	h.tick("2026-12-05T12:00:00Z")
	if got := len(h.cmds.startedIDs()); got != 2 {
		t.Fatalf("one prune per backup success: %d commands", got)
	}

	// Sunday 04:00 Paris (03:00Z): the drill, which fails on a table.
	h.tick("2026-12-06T03:00:00Z")
	ids = h.cmds.startedIDs()
	drillID := ids[len(ids)-1]
	if h.cmds.spec(drillID).GetDrill().GetDatabase() != "shop" {
		t.Fatalf("started %v; the last is not the drill", ids)
	}
	h.cmds.finishWith(drillID, utc("2026-12-06T03:10:00Z"), func(string) (*flotillav1.CommandResult, bool) {
		return &flotillav1.CommandResult{Kind: &flotillav1.CommandResult_Drill{Drill: &flotillav1.DrillResult{Database: "shop",
			Backup: &flotillav1.StoredBackup{Name: "shop-20261205T010000Z"}, Success: false, Failure: "public.orders: 12 rows, manifest says 13",
			Rto: durationpb.New(42 * time.Second)}}}, false
	})
	h.tick("2026-12-06T03:10:15Z")
	list, _ := h.st.ListBackups(context.Background(), store.BackupQuery{Name: "shop-20261205T010000Z"})
	if len(list) != 1 || list[0].DrillSucceeded || !strings.Contains(list[0].DrillMessage, "public.orders") || list[0].DrillCommandID != drillID ||
		list[0].URI != "s3://flotilla-backups/prod/shop-20261205T010000Z.dump" || list[0].Policy != "nightly" {
		t.Errorf("catalogued backup after the drill = %+v", list)
	}
	if got := testutil.ToFloat64(m.drillOK.WithLabelValues("db-1", "shop")); got != 0 {
		t.Errorf("last drill succeeded gauge = %v, want 0", got)
	}
	r, _ := h.st.ListBackupPolicyRuns(context.Background(), "nightly")
	for _, run := range r {
		if run.Job == store.BackupJobDrill && (run.LastSucceeded || !strings.Contains(run.LastMessage, "drill failed")) {
			t.Errorf("drill run = %+v", run)
		}
	}
}

// The gauges a restarted control plane shows come from the catalog.
func TestMetricsLoadFromTheCatalog(t *testing.T) {
	st := openStore(t)
	ctx := context.Background()
	for _, b := range []store.Backup{
		{ID: "a", AgentID: "db-1", Database: "shop", FinishedAt: utc("2026-12-05T01:05:00Z"), SizeBytes: 100, Verified: true},
		{ID: "b", AgentID: "db-1", Database: "shop", FinishedAt: utc("2026-12-06T01:05:00Z"), SizeBytes: 200, Verified: true},
	} {
		if _, err := st.RecordBackup(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.RecordBackupDrill(ctx, store.BackupDrill{BackupID: "a", At: utc("2026-12-06T03:10:00Z"), Succeeded: true, Restore: 42 * time.Second}); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg, commands.NewMetrics(reg))
	if err := m.Load(ctx, st); err != nil {
		t.Fatal(err)
	}
	want := `
# HELP flotilla_backup_last_drill_success_timestamp_seconds When the last successful restore drill of a database finished (Unix time).
# TYPE flotilla_backup_last_drill_success_timestamp_seconds gauge
flotilla_backup_last_drill_success_timestamp_seconds{agent="db-1",database="shop"} 1.7965266e+09
# HELP flotilla_backup_last_size_bytes Size of the last successful backup archive of a database.
# TYPE flotilla_backup_last_size_bytes gauge
flotilla_backup_last_size_bytes{agent="db-1",database="shop"} 200
# HELP flotilla_backup_last_success_timestamp_seconds When the last successful backup of a database finished (Unix time).
# TYPE flotilla_backup_last_success_timestamp_seconds gauge
flotilla_backup_last_success_timestamp_seconds{agent="db-1",database="shop"} 1.7965191e+09
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "flotilla_backup_last_drill_success_timestamp_seconds",
		"flotilla_backup_last_size_bytes", "flotilla_backup_last_success_timestamp_seconds"); err != nil {
		t.Error(err)
	}
}
