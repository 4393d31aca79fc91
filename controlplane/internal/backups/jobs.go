package backups

import (
	"context"
	"net/url"
	"path/filepath"
	"time"

	"go.uber.org/zap"

	flotillav1 "flotilla.dev/gen/flotilla/v1"

	"flotilla.dev/controlplane/internal/store"
)

// BackupJob takes the policy's backups and catalogues every host's result
// under the policy.
func BackupJob(st store.BackupStore, log *zap.Logger) Job {
	return Job{
		Name:     store.BackupJobBackup,
		Schedule: func(p *Policy) Schedule { return p.Backup },
		Spec: func(p *Policy) (*flotillav1.CommandSpec, error) {
			return &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Backup{Backup: &flotillav1.BackupCommand{
				Database: p.Def.GetDatabase(),
			}}}, nil
		},
		Finished: func(ctx context.Context, p *Policy, fc *flotillav1.FleetCommand) error {
			for _, h := range fc.GetHosts() {
				b, ok := FromHost(fc.GetId(), h)
				if !ok {
					continue
				}
				b.Policy = p.Def.GetName()
				if _, err := st.RecordBackup(ctx, b); err != nil {
					return err
				}
				log.Debug("backup catalogued", zap.String("backup", b.ID), zap.String("policy", b.Policy))
			}
			return nil
		},
	}
}

// FromHost is the catalog entry of one host's successful backup command;
// ok is false for a host without one.
func FromHost(fleetCommandID string, h *flotillav1.HostCommand) (store.Backup, bool) {
	r := h.GetResult().GetBackup()
	if h.GetState() != flotillav1.CommandState_COMMAND_STATE_SUCCEEDED || r == nil {
		return store.Backup{}, false
	}
	finished := h.GetFinishedAt().AsTime()
	if h.GetFinishedAt() == nil {
		finished = time.Now()
	}
	return fromResult(h.GetCommandId(), h.GetAgentId(), fleetCommandID, finished, r), true
}

// fromResult builds a catalog entry from a backup result: a success is a
// verified backup (the agent reads the archive back before it reports one).
func fromResult(id, agentID, fleetCommandID string, finished time.Time, r *flotillav1.BackupResult) store.Backup {
	b := store.Backup{
		ID: id, AgentID: agentID, Database: r.GetDatabase(), CommandID: fleetCommandID, FinishedAt: finished,
		SizeBytes: int64(r.GetSizeBytes()), SHA256: r.GetSha256(), URI: fileURI(r.GetPath()), Verified: true,
	}
	if r.GetStartedAt() != nil {
		b.StartedAt = r.GetStartedAt().AsTime()
	}
	return b
}

// fileURI is the file:// URI of an absolute path on the agent's host.
func fileURI(path string) string {
	if path == "" {
		return ""
	}
	return (&url.URL{Scheme: "file", Path: filepath.ToSlash(path)}).String()
}
