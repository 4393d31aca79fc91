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

// DefaultJobs are a policy's jobs: its backups, the prune after each
// backup run that succeeded, and its restore drills.
func DefaultJobs(st store.BackupStore, m *Metrics, log *zap.Logger) []Job {
	if log == nil {
		log = zap.NewNop()
	}
	return []Job{BackupJob(st, log), PruneJob(st, log), DrillJob(st, m, log)}
}

// BackupJob takes the policy's backups (dumps or base backups) and
// catalogues every host's result under the policy.
func BackupJob(st store.BackupStore, log *zap.Logger) Job {
	if log == nil {
		log = zap.NewNop()
	}
	return Job{
		Name:     store.BackupJobBackup,
		Schedule: func(p *Policy) Schedule { return p.Backup },
		Spec: func(p *Policy) (*flotillav1.CommandSpec, error) {
			db, dest := p.Def.GetDatabase(), p.Def.GetDestination()
			if p.Def.GetType() == flotillav1.BackupType_BACKUP_TYPE_BASE {
				return &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_BaseBackup{BaseBackup: &flotillav1.BaseBackupCommand{
					Database: db, Destination: dest}}}, nil
			}
			return &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Backup{Backup: &flotillav1.BackupCommand{
				Database: db, Destination: dest}}}, nil
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

// PruneJob applies the policy's retention on every host after each backup
// run that succeeded, and marks what the agents deleted as pruned in the
// catalog.
func PruneJob(st store.BackupStore, log *zap.Logger) Job {
	return Job{
		Name:  store.BackupJobPrune,
		After: store.BackupJobBackup,
		Spec: func(p *Policy) (*flotillav1.CommandSpec, error) {
			r := p.Def.GetRetention()
			return &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Prune{Prune: &flotillav1.PruneCommand{
				Database: p.Def.GetDatabase(), Destination: p.Def.GetDestination(),
				Retention: &flotillav1.RetentionRules{KeepLast: r.GetKeepLast(), KeepDaily: r.GetKeepDaily(),
					KeepWeekly: r.GetKeepWeekly(), KeepMonthly: r.GetKeepMonthly(), TimeZone: p.Def.GetTimeZone()},
				Wal: p.Def.GetType() == flotillav1.BackupType_BACKUP_TYPE_BASE,
			}}}, nil
		},
		Finished: func(ctx context.Context, _ *Policy, fc *flotillav1.FleetCommand) error {
			for _, h := range fc.GetHosts() {
				res := h.GetResult().GetPrune()
				if res == nil || res.GetDryRun() {
					continue
				}
				ids, err := catalogIDs(ctx, st, h.GetAgentId(), res.GetDeleted())
				if err != nil {
					return err
				}
				if err := st.MarkBackupsPruned(ctx, ids, finishedAt(h)); err != nil {
					return err
				}
				log.Info("backups pruned", zap.String("agent_id", h.GetAgentId()), zap.Int("deleted", len(res.GetDeleted())),
					zap.Int("catalogued", len(ids)), zap.Uint64("bytes_freed", res.GetBytesFreed()))
			}
			return nil
		},
	}
}

// DrillJob restores the newest verified dump of every host into a scratch
// server on the drill schedule and records each outcome, success or
// failure, with the backup it drilled.
func DrillJob(st store.BackupStore, m *Metrics, log *zap.Logger) Job {
	return Job{
		Name: store.BackupJobDrill,
		Schedule: func(p *Policy) Schedule {
			if p.Drill == nil {
				return nil // a nil *schedule.Schedule is no Schedule
			}
			return p.Drill
		},
		Spec: func(p *Policy) (*flotillav1.CommandSpec, error) {
			return &flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Drill{Drill: &flotillav1.DrillCommand{
				Database: p.Def.GetDatabase(), Destination: p.Def.GetDestination()}}}, nil
		},
		Finished: func(ctx context.Context, _ *Policy, fc *flotillav1.FleetCommand) error {
			for _, h := range fc.GetHosts() {
				if err := recordDrill(ctx, st, m, fc.GetId(), h); err != nil {
					return err
				}
				if h.GetResult().GetDrill() == nil && h.GetState() != flotillav1.CommandState_COMMAND_STATE_SUCCEEDED {
					log.Warn("restore drill failed before it reached a backup", zap.String("agent_id", h.GetAgentId()),
						zap.String("message", h.GetMessage()))
				}
			}
			return nil
		},
	}
}

// recordDrill records one host's drill result against the catalogued
// backup it drilled; a host without a result, or whose backup is not in
// the catalog, records nothing.
func recordDrill(ctx context.Context, st store.BackupStore, m *Metrics, fcID string, h *flotillav1.HostCommand) error {
	res := h.GetResult().GetDrill()
	if res == nil {
		return nil
	}
	list, err := st.ListBackups(ctx, store.BackupQuery{AgentID: h.GetAgentId(), Name: res.GetBackup().GetName(), Limit: 1})
	if err != nil || len(list) == 0 {
		return err
	}
	d := store.BackupDrill{BackupID: list[0].ID, At: finishedAt(h), Succeeded: res.GetSuccess(), Message: res.GetFailure(),
		CommandID: fcID, Restore: res.GetRto().AsDuration(), RPO: res.GetRpo().AsDuration()}
	if !d.Succeeded && d.Message == "" {
		d.Message = h.GetMessage()
	}
	if err := st.RecordBackupDrill(ctx, d); err != nil {
		return err
	}
	b := list[0]
	b.DrillAt, b.DrillSucceeded, b.DrillRestore = d.At, d.Succeeded, d.Restore
	m.Drill(b)
	return nil
}

// catalogIDs returns the catalog IDs of an agent's stored backups.
func catalogIDs(ctx context.Context, st store.BackupStore, agentID string, stored []*flotillav1.StoredBackup) ([]string, error) {
	var ids []string
	for _, sb := range stored {
		list, err := st.ListBackups(ctx, store.BackupQuery{AgentID: agentID, Name: sb.GetName(), Limit: 1})
		if err != nil {
			return nil, err
		}
		if len(list) > 0 {
			ids = append(ids, list[0].ID)
		}
	}
	return ids, nil
}

func finishedAt(h *flotillav1.HostCommand) time.Time {
	if h.GetFinishedAt() == nil {
		return time.Now()
	}
	return h.GetFinishedAt().AsTime()
}

// FromHost is the catalog entry of one host's successful backup or base
// backup command; ok is false for a host without one.
func FromHost(fleetCommandID string, h *flotillav1.HostCommand) (store.Backup, bool) {
	r := h.GetResult().GetBackup()
	if h.GetState() != flotillav1.CommandState_COMMAND_STATE_SUCCEEDED || r == nil {
		return store.Backup{}, false
	}
	return fromResult(h.GetCommandId(), h.GetAgentId(), fleetCommandID, finishedAt(h), r), true
}

// fromResult builds a catalog entry from a backup result.
func fromResult(id, agentID, fleetCommandID string, finished time.Time, r *flotillav1.BackupResult) store.Backup {
	if r.GetFinishedAt() != nil {
		finished = r.GetFinishedAt().AsTime()
	}
	b := store.Backup{
		ID: id, AgentID: agentID, Database: r.GetDatabase(), CommandID: fleetCommandID, FinishedAt: finished,
		SizeBytes: int64(r.GetSizeBytes()), SHA256: r.GetSha256(), URI: r.GetDestinationUri(), Name: r.GetName(),
		Type: int32(r.GetType()),
		// An agent from before destinations reports no type and no
		// verified flag; its successes were verified (pg_restore --list).
		Verified: r.GetVerified() || r.GetType() == flotillav1.BackupType_BACKUP_TYPE_UNSPECIFIED,
	}
	if b.URI == "" {
		b.URI = fileURI(r.GetPath())
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
