package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"flotilla.dev/controlplane/internal/store"
)

func testPolicy(name string) store.BackupPolicy {
	return store.BackupPolicy{Name: name, Spec: []byte("spec-" + name), CreatedBy: "operator:t", CreatedAt: t0, UpdatedAt: t0}
}

func mustCreatePolicy(t *testing.T, s store.Store, name string) store.BackupPolicy {
	t.Helper()
	p := testPolicy(name)
	if err := s.CreateBackupPolicy(context.Background(), p); err != nil {
		t.Fatalf("CreateBackupPolicy(%q): %v", name, err)
	}
	return p
}

func testBackupPolicies(t *testing.T, open Opener) {
	s, ctx := open(t), context.Background()
	p := mustCreatePolicy(t, s, "nightly")
	mustCreatePolicy(t, s, "alpha")
	if err := s.CreateBackupPolicy(ctx, p); !errors.Is(err, store.ErrConflict) {
		t.Errorf("second create: %v, want ErrConflict", err)
	}
	got, err := s.GetBackupPolicy(ctx, "nightly")
	if err != nil || !reflect.DeepEqual(got, p) {
		t.Errorf("GetBackupPolicy = %+v, %v; want %+v", got, err, p)
	}
	upd := store.BackupPolicy{Name: "nightly", Spec: []byte("v2"), CreatedBy: "ignored", CreatedAt: t0.Add(time.Hour), UpdatedAt: t0.Add(time.Minute)}
	got, err = s.UpdateBackupPolicy(ctx, upd)
	want := store.BackupPolicy{Name: "nightly", Spec: []byte("v2"), CreatedBy: "operator:t", CreatedAt: t0, UpdatedAt: t0.Add(time.Minute)}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("UpdateBackupPolicy = %+v, %v; want %+v (creation kept)", got, err, want)
	}
	if _, err := s.UpdateBackupPolicy(ctx, testPolicy("nope")); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("update unknown: %v, want ErrNotFound", err)
	}
	list, err := s.ListBackupPolicies(ctx)
	if err != nil || len(list) != 2 || list[0].Name != "alpha" || list[1].Name != "nightly" {
		t.Errorf("ListBackupPolicies = %+v, %v; want alpha, nightly", list, err)
	}
	if err := s.StartBackupPolicyRun(ctx, store.BackupPolicyRun{Policy: "nightly", Job: store.BackupJobBackup, LastSlot: t0, CommandID: "cmd-1", StartedAt: t0}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteBackupPolicy(ctx, "nightly"); err != nil {
		t.Fatalf("DeleteBackupPolicy: %v", err)
	}
	if err := s.DeleteBackupPolicy(ctx, "nightly"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second delete: %v, want ErrNotFound", err)
	}
	if _, err := s.GetBackupPolicy(ctx, "nightly"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("get deleted: %v, want ErrNotFound", err)
	}
	if runs, err := s.ListBackupPolicyRuns(ctx, ""); err != nil || len(runs) != 0 {
		t.Errorf("runs of a deleted policy: %+v, %v; want none", runs, err)
	}
	// A policy made again under the same name starts with no runs.
	mustCreatePolicy(t, s, "nightly")
	if runs, err := s.ListBackupPolicyRuns(ctx, "nightly"); err != nil || len(runs) != 0 {
		t.Errorf("runs of a re-created policy: %+v, %v; want none", runs, err)
	}
}

func testBackupPolicyRuns(t *testing.T, open Opener) {
	s, ctx := open(t), context.Background()
	mustCreatePolicy(t, s, "nightly")
	start := store.BackupPolicyRun{Policy: "nightly", Job: store.BackupJobBackup, LastSlot: t0, CommandID: "cmd-1", StartedAt: t0.Add(time.Second)}
	if err := s.StartBackupPolicyRun(ctx, start); err != nil {
		t.Fatalf("start: %v", err)
	}
	// No overlap: a second start while cmd-1 runs is refused, unchanged.
	second := start
	second.CommandID, second.LastSlot = "cmd-2", t0.Add(24*time.Hour)
	if err := s.StartBackupPolicyRun(ctx, second); !errors.Is(err, store.ErrRunInProgress) {
		t.Errorf("overlapping start: %v, want ErrRunInProgress", err)
	}
	// Another job of the same policy is independent.
	drill := store.BackupPolicyRun{Policy: "nightly", Job: store.BackupJobDrill, LastSlot: t0, CommandID: "cmd-d", StartedAt: t0}
	if err := s.StartBackupPolicyRun(ctx, drill); err != nil {
		t.Errorf("drill start: %v", err)
	}
	if err := s.StartBackupPolicyRun(ctx, store.BackupPolicyRun{Policy: "none", Job: store.BackupJobBackup, CommandID: "x"}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("start for an unknown policy: %v, want ErrNotFound", err)
	}
	// Only the run in progress can be finished.
	wrong := store.BackupPolicyRun{Policy: "nightly", Job: store.BackupJobBackup, LastCommandID: "cmd-2", LastFinishedAt: t0}
	if err := s.FinishBackupPolicyRun(ctx, wrong); !errors.Is(err, store.ErrRunInProgress) {
		t.Errorf("finishing another run: %v, want ErrRunInProgress", err)
	}
	fin := store.BackupPolicyRun{Policy: "nightly", Job: store.BackupJobBackup, LastCommandID: "cmd-1",
		LastFinishedAt: t0.Add(time.Minute), LastSucceeded: false, LastMessage: "1 of 2 hosts failed"}
	if err := s.FinishBackupPolicyRun(ctx, fin); err != nil {
		t.Fatalf("finish: %v", err)
	}
	if err := s.FinishBackupPolicyRun(ctx, fin); !errors.Is(err, store.ErrRunInProgress) {
		t.Errorf("finishing twice: %v, want ErrRunInProgress", err)
	}
	if err := s.StartBackupPolicyRun(ctx, second); err != nil {
		t.Fatalf("start after finish: %v", err)
	}
	// A success sets LastSuccessAt; the failure after it keeps it.
	ok := store.BackupPolicyRun{Policy: "nightly", Job: store.BackupJobDrill, LastCommandID: "cmd-d",
		LastFinishedAt: t0.Add(2 * time.Minute), LastSucceeded: true}
	if err := s.FinishBackupPolicyRun(ctx, ok); err != nil {
		t.Fatal(err)
	}
	drill2 := store.BackupPolicyRun{Policy: "nightly", Job: store.BackupJobDrill, LastSlot: t0.Add(time.Hour), CommandID: "cmd-d2", StartedAt: t0}
	if err := s.StartBackupPolicyRun(ctx, drill2); err != nil {
		t.Fatal(err)
	}
	failed := store.BackupPolicyRun{Policy: "nightly", Job: store.BackupJobDrill, LastCommandID: "cmd-d2",
		LastFinishedAt: t0.Add(3 * time.Minute), LastMessage: "restore failed"}
	if err := s.FinishBackupPolicyRun(ctx, failed); err != nil {
		t.Fatal(err)
	}
	runs, err := s.ListBackupPolicyRuns(ctx, "nightly")
	if err != nil {
		t.Fatal(err)
	}
	want := []store.BackupPolicyRun{
		{Policy: "nightly", Job: store.BackupJobBackup, LastSlot: second.LastSlot, CommandID: "cmd-2", StartedAt: second.StartedAt,
			LastCommandID: "cmd-1", LastFinishedAt: fin.LastFinishedAt, LastSucceeded: false, LastMessage: fin.LastMessage},
		{Policy: "nightly", Job: store.BackupJobDrill, LastSlot: drill2.LastSlot, StartedAt: t0, LastCommandID: "cmd-d2",
			LastFinishedAt: failed.LastFinishedAt, LastMessage: "restore failed", LastSuccessAt: ok.LastFinishedAt},
	}
	if !reflect.DeepEqual(runs, want) {
		t.Errorf("runs =\n%+v\nwant\n%+v", runs, want)
	}
}

func testBackup(id, agent, db string, finished time.Time) store.Backup {
	return store.Backup{ID: id, AgentID: agent, Database: db, CommandID: "cmd-" + id, StartedAt: finished.Add(-time.Minute),
		FinishedAt: finished, SizeBytes: 1 << 40, SHA256: fmt.Sprintf("%064d", len(id)), URI: "file:///var/backups/" + id, Verified: true,
		Name: db + "-" + finished.Format("20060102T150405Z"), Type: 1}
}

func testBackupCatalog(t *testing.T, open Opener) {
	s, ctx := open(t), context.Background()
	var recorded []store.Backup
	for i, b := range []store.Backup{
		testBackup("b1", "db-1", "app", t0),
		testBackup("b2", "db-2", "app", t0.Add(time.Hour)),
		testBackup("b3", "db-1", "app", t0.Add(2*time.Hour)),
		testBackup("b4", "db-1", "billing", t0.Add(3*time.Hour)),
	} {
		if i == 2 {
			b.Verified, b.Policy = false, "nightly"
		}
		got, err := s.RecordBackup(ctx, b)
		if err != nil {
			t.Fatalf("RecordBackup(%s): %v", b.ID, err)
		}
		if got.Seq <= 0 || (i > 0 && got.Seq <= recorded[i-1].Seq) {
			t.Errorf("%s: seq %d, want increasing", b.ID, got.Seq)
		}
		b.Seq = got.Seq
		if !reflect.DeepEqual(got, b) {
			t.Errorf("RecordBackup(%s) =\n%+v\nwant\n%+v", b.ID, got, b)
		}
		recorded = append(recorded, got)
	}
	// Idempotent: recording again keeps the row and its seq; an empty
	// policy takes the one given.
	again := testBackup("b1", "other", "other", t0.Add(time.Hour))
	again.Policy = "nightly"
	got, err := s.RecordBackup(ctx, again)
	want := recorded[0]
	want.Policy = "nightly"
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("recording b1 again = %+v, %v; want %+v", got, err, want)
	}
	ids := func(q store.BackupQuery) []string {
		t.Helper()
		list, err := s.ListBackups(ctx, q)
		if err != nil {
			t.Fatalf("ListBackups(%+v): %v", q, err)
		}
		var out []string
		for _, b := range list {
			out = append(out, b.ID)
		}
		return out
	}
	yes, no := true, false
	for _, tc := range []struct {
		q    store.BackupQuery
		want []string
	}{
		{store.BackupQuery{}, []string{"b4", "b3", "b2", "b1"}},
		{store.BackupQuery{AgentID: "db-1"}, []string{"b4", "b3", "b1"}},
		{store.BackupQuery{AgentID: "db-1", Database: "app"}, []string{"b3", "b1"}},
		{store.BackupQuery{Policy: "nightly"}, []string{"b3", "b1"}},
		{store.BackupQuery{Verified: &yes}, []string{"b4", "b2", "b1"}},
		{store.BackupQuery{Verified: &no}, []string{"b3"}},
		{store.BackupQuery{Limit: 2}, []string{"b4", "b3"}},
		{store.BackupQuery{AgentID: "db-1", Name: recorded[2].Name}, []string{"b3"}},
		{store.BackupQuery{BeforeSeq: recorded[2].Seq, Limit: 2}, []string{"b2", "b1"}},
	} {
		if got := ids(tc.q); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ListBackups(%+v) = %v, want %v", tc.q, got, tc.want)
		}
	}
	if _, err := s.GetBackup(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetBackup(unknown): %v, want ErrNotFound", err)
	}
	if err := s.MarkBackupsPruned(ctx, []string{"b1", "unknown"}, t0.Add(5*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkBackupsPruned(ctx, []string{"b1"}, t0.Add(6*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if b, _ := s.GetBackup(ctx, "b1"); !b.PrunedAt.Equal(t0.Add(5 * time.Hour)) {
		t.Errorf("pruned_at = %v, want the first prune's %v", b.PrunedAt, t0.Add(5*time.Hour))
	}
}

func testBackupDrillsAndLatest(t *testing.T, open Opener) {
	s, ctx := open(t), context.Background()
	for _, b := range []store.Backup{
		testBackup("b1", "db-1", "app", t0),
		testBackup("b2", "db-1", "app", t0.Add(time.Hour)),
		testBackup("b3", "db-1", "app", t0.Add(2*time.Hour)),
		testBackup("b4", "db-2", "app", t0.Add(time.Hour)),
	} {
		if b.ID == "b3" {
			b.Verified = false
		}
		if _, err := s.RecordBackup(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	drills := []store.BackupDrill{
		{BackupID: "b1", At: t0.Add(3 * time.Hour), Succeeded: true, CommandID: "cmd-d1", Restore: 90 * time.Second, RPO: time.Minute},
		{BackupID: "b2", At: t0.Add(4 * time.Hour), Succeeded: false, Message: "row counts differ", CommandID: "cmd-d2"},
	}
	for _, d := range drills {
		if err := s.RecordBackupDrill(ctx, d); err != nil {
			t.Fatalf("RecordBackupDrill(%s): %v", d.BackupID, err)
		}
	}
	if err := s.RecordBackupDrill(ctx, store.BackupDrill{BackupID: "nope", At: t0}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("drill of an unknown backup: %v, want ErrNotFound", err)
	}
	b1, _ := s.GetBackup(ctx, "b1")
	if !b1.DrillAt.Equal(drills[0].At) || !b1.DrillSucceeded || b1.DrillCommandID != "cmd-d1" || b1.DrillRestore != 90*time.Second || b1.DrillRPO != time.Minute {
		t.Errorf("b1 after its drill: %+v", b1)
	}
	latest, err := s.LatestBackups(ctx)
	if err != nil {
		t.Fatal(err)
	}
	idsOf := func(list []store.Backup) []string {
		var out []string
		for _, b := range list {
			out = append(out, b.ID)
		}
		return out
	}
	// b3 is newer but unverified: b2 is db-1's newest verified backup.
	if got, want := idsOf(latest.Verified), []string{"b2", "b4"}; !reflect.DeepEqual(got, want) {
		t.Errorf("latest verified = %v, want %v", got, want)
	}
	if got, want := idsOf(latest.Drilled), []string{"b2"}; !reflect.DeepEqual(got, want) {
		t.Errorf("latest drilled = %v, want %v", got, want)
	}
	if got, want := idsOf(latest.DrillSucceeded), []string{"b1"}; !reflect.DeepEqual(got, want) {
		t.Errorf("latest successful drill = %v, want %v", got, want)
	}
}
