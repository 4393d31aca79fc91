package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"flotilla.dev/controlplane/internal/store"
)

const (
	backupPolicyColumns    = store.BackupPolicyColumns
	backupPolicyRunColumns = store.BackupPolicyRunColumns
	backupColumns          = store.BackupColumns
)

// CreateBackupPolicy inserts a policy; an existing name is ErrConflict.
func (s *Store) CreateBackupPolicy(ctx context.Context, p store.BackupPolicy) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO backup_policies (`+backupPolicyColumns+`) VALUES ($1, $2, $3, $4, $5)`,
		p.Name, p.Spec, p.CreatedBy, timeArg(p.CreatedAt), timeArg(p.UpdatedAt))
	if isConflict(err) {
		return fmt.Errorf("store: create backup policy %q: %w", p.Name, store.ErrConflict)
	}
	if err != nil {
		return wrap(err, "create backup policy %q", p.Name)
	}
	return nil
}

// UpdateBackupPolicy replaces a policy's definition.
func (s *Store) UpdateBackupPolicy(ctx context.Context, p store.BackupPolicy) (store.BackupPolicy, error) {
	out, err := scanBackupPolicy(s.pool.QueryRow(ctx, `UPDATE backup_policies SET spec = $1, updated_at = $2
		WHERE name = $3 RETURNING `+backupPolicyColumns, p.Spec, timeArg(p.UpdatedAt), p.Name))
	return found(out, err, "update backup policy", p.Name)
}

// GetBackupPolicy returns a policy or ErrNotFound.
func (s *Store) GetBackupPolicy(ctx context.Context, name string) (store.BackupPolicy, error) {
	p, err := scanBackupPolicy(s.pool.QueryRow(ctx, `SELECT `+backupPolicyColumns+` FROM backup_policies WHERE name = $1`, name))
	return found(p, err, "get backup policy", name)
}

// ListBackupPolicies returns every policy by name.
func (s *Store) ListBackupPolicies(ctx context.Context) ([]store.BackupPolicy, error) {
	return queryAll(ctx, s.pool, "list backup policies", scanBackupPolicy,
		`SELECT `+backupPolicyColumns+` FROM backup_policies ORDER BY name`)
}

// DeleteBackupPolicy removes a policy; its run rows go with it (ON DELETE
// CASCADE).
func (s *Store) DeleteBackupPolicy(ctx context.Context, name string) error {
	tag, err := s.pool.Exec(ctx, `DELETE FROM backup_policies WHERE name = $1`, name)
	if err != nil {
		return wrap(err, "delete backup policy %q", name)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("store: delete backup policy %q: %w", name, store.ErrNotFound)
	}
	return nil
}

// ListBackupPolicyRuns returns run rows by policy, then job.
func (s *Store) ListBackupPolicyRuns(ctx context.Context, policy string) ([]store.BackupPolicyRun, error) {
	var w where
	if policy != "" {
		w.add("policy = ?", policy)
	}
	query, args := w.query(`SELECT `+backupPolicyRunColumns+` FROM backup_policy_runs`, "policy, job", 0)
	return queryAll(ctx, s.pool, "list backup policy runs", scanBackupPolicyRun, query, args...)
}

// StartBackupPolicyRun records a run in progress unless one is. The row
// lock ON CONFLICT takes makes two control planes starting the same job at
// once wait for each other; the second finds command_id set.
func (s *Store) StartBackupPolicyRun(ctx context.Context, r store.BackupPolicyRun) error {
	op := fmt.Sprintf("start %s run of backup policy %q", r.Job, r.Policy)
	tag, err := s.pool.Exec(ctx, `INSERT INTO backup_policy_runs (`+backupPolicyRunColumns+`)
		SELECT name, $2, $3, $4, $5, '', NULL, false, '', NULL FROM backup_policies WHERE name = $1
		ON CONFLICT (policy, job) DO UPDATE SET last_slot = excluded.last_slot,
			command_id = excluded.command_id, started_at = excluded.started_at
		WHERE backup_policy_runs.command_id = ''`,
		r.Policy, r.Job, timeArg(r.LastSlot), r.CommandID, timeArg(r.StartedAt))
	if err != nil {
		return wrap(err, "%s", op)
	}
	if tag.RowsAffected() == 1 {
		return nil
	}
	var one int
	err = s.pool.QueryRow(ctx, `SELECT 1 FROM backup_policies WHERE name = $1`, r.Policy).Scan(&one)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return fmt.Errorf("store: %s: %w", op, store.ErrNotFound)
	case err != nil:
		return wrap(err, "%s", op)
	}
	return fmt.Errorf("store: %s: %w", op, store.ErrRunInProgress)
}

// FinishBackupPolicyRun records the end of the run in progress.
func (s *Store) FinishBackupPolicyRun(ctx context.Context, r store.BackupPolicyRun) error {
	op := fmt.Sprintf("finish %s run %s of backup policy %q", r.Job, r.LastCommandID, r.Policy)
	tag, err := s.pool.Exec(ctx, `UPDATE backup_policy_runs SET command_id = '', last_command_id = $1,
		last_finished_at = $2, last_succeeded = $3, last_message = $4,
		last_success_at = CASE WHEN $3 THEN $2 ELSE backup_policy_runs.last_success_at END
		WHERE policy = $5 AND job = $6 AND command_id = $1 AND command_id != ''`,
		r.LastCommandID, timeArg(r.LastFinishedAt), r.LastSucceeded, r.LastMessage, r.Policy, r.Job)
	if err != nil {
		return wrap(err, "%s", op)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("store: %s: %w", op, store.ErrRunInProgress)
	}
	return nil
}

// RecordBackup catalogues a backup, idempotently.
func (s *Store) RecordBackup(ctx context.Context, b store.Backup) (store.Backup, error) {
	_, err := s.pool.Exec(ctx, `INSERT INTO backups (`+store.BackupColumns[len("seq, "):]+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)
		ON CONFLICT (id) DO UPDATE SET policy = excluded.policy WHERE backups.policy = ''`,
		b.ID, b.AgentID, b.Database, b.Policy, b.CommandID, timeArg(b.StartedAt), timeArg(b.FinishedAt), b.SizeBytes,
		b.SHA256, b.URI, b.Verified, timeArg(b.DrillAt), b.DrillSucceeded, b.DrillMessage, b.DrillCommandID,
		int64(b.DrillRestore), int64(b.DrillRPO), timeArg(b.PrunedAt), b.Name, b.Type)
	if err != nil {
		return store.Backup{}, wrap(err, "record backup %q", b.ID)
	}
	return s.GetBackup(ctx, b.ID)
}

// GetBackup returns a catalogued backup or ErrNotFound.
func (s *Store) GetBackup(ctx context.Context, id string) (store.Backup, error) {
	b, err := scanBackup(s.pool.QueryRow(ctx, `SELECT `+backupColumns+` FROM backups WHERE id = $1`, id))
	return found(b, err, "get backup", id)
}

// ListBackups returns catalogued backups, highest Seq first.
func (s *Store) ListBackups(ctx context.Context, q store.BackupQuery) ([]store.Backup, error) {
	var w where
	for _, f := range []struct{ col, val string }{{"agent_id", q.AgentID}, {"database_name", q.Database}, {"policy", q.Policy}, {"name", q.Name}} {
		if f.val != "" {
			w.add(f.col+" = ?", f.val)
		}
	}
	if q.Verified != nil {
		w.add("verified = ?", *q.Verified)
	}
	if q.BeforeSeq > 0 {
		w.add("seq < ?", q.BeforeSeq)
	}
	query, args := w.query(`SELECT `+backupColumns+` FROM backups`, "seq DESC", q.Limit)
	return queryAll(ctx, s.pool, "list backups", scanBackup, query, args...)
}

// RecordBackupDrill sets the last drill of a backup.
func (s *Store) RecordBackupDrill(ctx context.Context, d store.BackupDrill) error {
	tag, err := s.pool.Exec(ctx, `UPDATE backups SET drill_at = $1, drill_succeeded = $2, drill_message = $3,
		drill_command_id = $4, drill_restore_ns = $5, drill_rpo_ns = $6 WHERE id = $7`,
		timeArg(d.At), d.Succeeded, d.Message, d.CommandID, int64(d.Restore), int64(d.RPO), d.BackupID)
	if err != nil {
		return wrap(err, "record drill of backup %q", d.BackupID)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("store: record drill of backup %q: %w", d.BackupID, store.ErrNotFound)
	}
	return nil
}

// MarkBackupsPruned sets the pruned time of backups not yet pruned.
func (s *Store) MarkBackupsPruned(ctx context.Context, ids []string, at time.Time) error {
	if len(ids) == 0 {
		return nil
	}
	if _, err := s.pool.Exec(ctx, `UPDATE backups SET pruned_at = $1 WHERE pruned_at IS NULL AND id = ANY($2)`,
		timeArg(at), ids); err != nil {
		return wrap(err, "mark %d backups pruned", len(ids))
	}
	return nil
}

// LatestBackups returns the newest backups per agent and database.
func (s *Store) LatestBackups(ctx context.Context) (store.LatestBackups, error) {
	var out store.LatestBackups
	dst := []*[]store.Backup{&out.Verified, &out.Drilled, &out.DrillSucceeded}
	for i, q := range store.LatestBackupQueries() {
		list, err := queryAll(ctx, s.pool, "latest backups", scanBackup, q)
		if err != nil {
			return store.LatestBackups{}, err
		}
		*dst[i] = list
	}
	return out, nil
}

func scanBackupPolicy(row pgx.Row) (store.BackupPolicy, error) {
	var p store.BackupPolicy
	err := row.Scan(&p.Name, &p.Spec, &p.CreatedBy, timeCol{&p.CreatedAt}, timeCol{&p.UpdatedAt})
	return p, err
}

func scanBackupPolicyRun(row pgx.Row) (store.BackupPolicyRun, error) {
	var r store.BackupPolicyRun
	err := row.Scan(&r.Policy, &r.Job, timeCol{&r.LastSlot}, &r.CommandID, timeCol{&r.StartedAt}, &r.LastCommandID,
		timeCol{&r.LastFinishedAt}, &r.LastSucceeded, &r.LastMessage, timeCol{&r.LastSuccessAt})
	return r, err
}

func scanBackup(row pgx.Row) (store.Backup, error) {
	var b store.Backup
	var restore, rpo int64
	err := row.Scan(&b.Seq, &b.ID, &b.AgentID, &b.Database, &b.Policy, &b.CommandID, timeCol{&b.StartedAt},
		timeCol{&b.FinishedAt}, &b.SizeBytes, &b.SHA256, &b.URI, &b.Verified, timeCol{&b.DrillAt}, &b.DrillSucceeded,
		&b.DrillMessage, &b.DrillCommandID, &restore, &rpo, timeCol{&b.PrunedAt}, &b.Name, &b.Type)
	b.DrillRestore, b.DrillRPO = time.Duration(restore), time.Duration(rpo)
	return b, err
}
