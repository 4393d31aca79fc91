package server_test

import (
	"strings"
	"testing"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/controlplane/internal/server/servertest"
)

// A backup run by hand is catalogued, and its gauges survive a restart of
// the control plane: they are loaded from the catalog, so the stale-backup
// alert does not go silent.
func TestBackupGaugesSurviveARestart(t *testing.T) {
	t.Parallel()
	h := start(t, servertest.WithDataDir(t.TempDir()))
	cc := h.commands()
	a := h.scriptedFleet("backups", 1, true)[0]
	fc := cc.run(&flotillav1.RunCommandRequest{Spec: backupSpec("shop"), AgentIds: []string{a.id}})
	cmd := a.nextCommand()
	a.event(cmd.GetId(), stateSucceeded, "backed up", &flotillav1.CommandResult{Kind: &flotillav1.CommandResult_Backup{Backup: &flotillav1.BackupResult{
		Database: "shop", Name: "shop-20261207T020000Z", Type: flotillav1.BackupType_BACKUP_TYPE_DUMP, Verified: true,
		DestinationUri: "file:///var/lib/flotilla/backups/shop-20261207T020000Z.dump", SizeBytes: 123456, Sha256: strings.Repeat("ab", 32),
	}}})
	cc.waitState(fc.GetId(), fleetSucceeded)
	ctx := h.operatorCtx(h.admin)
	bs := flotillav1.NewBackupServiceClient(h.dial(h.serverTLS()))
	var got *flotillav1.Backup
	eventually(t, waitFor, "the backup to be catalogued", func() bool {
		resp, err := bs.GetBackup(ctx, &flotillav1.GetBackupRequest{Id: cmd.GetId()})
		got = resp.GetBackup()
		return err == nil
	})
	if got.GetName() != "shop-20261207T020000Z" || !got.GetVerified() || got.GetPolicy() != "" || got.GetCommandId() != fc.GetId() ||
		got.GetUri() != "file:///var/lib/flotilla/backups/shop-20261207T020000Z.dump" || got.GetType() != flotillav1.BackupType_BACKUP_TYPE_DUMP {
		t.Errorf("catalogued = %v", got)
	}

	h2 := h.restart()
	metrics := h2.scrape()
	for _, want := range []string{
		`flotilla_backup_last_size_bytes{agent="` + a.id + `",database="shop"} 123456`,
		`flotilla_backup_last_success_timestamp_seconds{agent="` + a.id + `",database="shop"} `,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("after a restart /metrics lacks %s", want)
		}
	}
}
