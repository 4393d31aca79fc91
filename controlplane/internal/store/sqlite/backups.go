package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"flotilla.dev/controlplane/internal/store"
)

const (
	backupPolicyColumns    = store.BackupPolicyColumns
	backupPolicyRunColumns = store.BackupPolicyRunColumns
	backupColumns          = store.BackupColumns
)

// CreateBackupPolicy inserts a policy; an existing name is ErrConflict.
func (s *Store) CreateBackupPolicy(ctx context.Context, p store.BackupPolicy) error {
	return s.inWriteTx(ctx, "create backup policy", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO backup_policies (`+backupPolicyColumns+`) VALUES (?, ?, ?, ?, ?)`,
			p.Name, blobArg(p.Spec), p.CreatedBy, timeArg(p.CreatedAt), timeArg(p.UpdatedAt))
		if isConflict(err) {
			return fmt.Errorf("store: create backup policy %q: %w", p.Name, store.ErrConflict)
		}
		if err != nil {
			return fmt.Errorf("store: create backup policy %q: %w", p.Name, err)
		}
		return nil
	})
}

// UpdateBackupPolicy replaces a policy's definition.
func (s *Store) UpdateBackupPolicy(ctx context.Context, p store.BackupPolicy) (store.BackupPolicy, error) {
	var out store.BackupPolicy
	err := s.inWriteTx(ctx, "update backup policy", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE backup_policies SET spec = ?, updated_at = ? WHERE name = ?`,
			blobArg(p.Spec), timeArg(p.UpdatedAt), p.Name)
		if err != nil {
			return fmt.Errorf("store: update backup policy %q: %w", p.Name, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("store: update backup policy %q: %w", p.Name, store.ErrNotFound)
		}
		out, err = scanBackupPolicy(tx.QueryRowContext(ctx, `SELECT `+backupPolicyColumns+` FROM backup_policies WHERE name = ?`, p.Name))
		if err != nil {
			return fmt.Errorf("store: update backup policy %q: read back: %w", p.Name, err)
		}
		return nil
	})
	return out, err
}

// GetBackupPolicy returns a policy or ErrNotFound.
func (s *Store) GetBackupPolicy(ctx context.Context, name string) (store.BackupPolicy, error) {
	p, err := scanBackupPolicy(s.read.QueryRowContext(ctx, `SELECT `+backupPolicyColumns+` FROM backup_policies WHERE name = ?`, name))
	return found(p, err, "get backup policy", name)
}

// ListBackupPolicies returns every policy by name.
func (s *Store) ListBackupPolicies(ctx context.Context) ([]store.BackupPolicy, error) {
	return queryAll(ctx, s.read, "list backup policies", scanBackupPolicy,
		`SELECT `+backupPolicyColumns+` FROM backup_policies ORDER BY name`)
}

// DeleteBackupPolicy removes a policy and its run rows.
func (s *Store) DeleteBackupPolicy(ctx context.Context, name string) error {
	return s.inWriteTx(ctx, "delete backup policy", func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM backup_policy_runs WHERE policy = ?`, name); err != nil {
			return fmt.Errorf("store: delete backup policy %q: %w", name, err)
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM backup_policies WHERE name = ?`, name)
		if err != nil {
			return fmt.Errorf("store: delete backup policy %q: %w", name, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("store: delete backup policy %q: %w", name, store.ErrNotFound)
		}
		return nil
	})
}

// ListBackupPolicyRuns returns run rows by policy, then job.
func (s *Store) ListBackupPolicyRuns(ctx context.Context, policy string) ([]store.BackupPolicyRun, error) {
	var (
		where []string
		args  []any
	)
	if policy != "" {
		where, args = []string{"policy = ?"}, []any{policy}
	}
	query, args := listQuery(`SELECT `+backupPolicyRunColumns+` FROM backup_policy_runs`, where, args, "policy, job", 0)
	return queryAll(ctx, s.read, "list backup policy runs", scanBackupPolicyRun, query, args...)
}

// StartBackupPolicyRun records a run in progress unless one is.
func (s *Store) StartBackupPolicyRun(ctx context.Context, r store.BackupPolicyRun) error {
	op := fmt.Sprintf("start %s run of backup policy %q", r.Job, r.Policy)
	return s.inWriteTx(ctx, op, func(tx *sql.Tx) error {
		var exists int
		err := tx.QueryRowContext(ctx, `SELECT 1 FROM backup_policies WHERE name = ?`, r.Policy).Scan(&exists)
		if err == sql.ErrNoRows {
			return fmt.Errorf("store: %s: %w", op, store.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("store: %s: %w", op, err)
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO backup_policy_runs (`+backupPolicyRunColumns+`)
			VALUES (?, ?, ?, ?, ?, '', NULL, 0, '', NULL)
			ON CONFLICT (policy, job) DO UPDATE SET last_slot = excluded.last_slot,
				command_id = excluded.command_id, started_at = excluded.started_at
			WHERE backup_policy_runs.command_id = ''`,
			r.Policy, r.Job, timeArg(r.LastSlot), r.CommandID, timeArg(r.StartedAt))
		if err != nil {
			return fmt.Errorf("store: %s: %w", op, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("store: %s: %w", op, store.ErrRunInProgress)
		}
		return nil
	})
}

// FinishBackupPolicyRun records the end of the run in progress.
func (s *Store) FinishBackupPolicyRun(ctx context.Context, r store.BackupPolicyRun) error {
	op := fmt.Sprintf("finish %s run %s of backup policy %q", r.Job, r.LastCommandID, r.Policy)
	return s.inWriteTx(ctx, op, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE backup_policy_runs SET command_id = '', last_command_id = ?,
			last_finished_at = ?, last_succeeded = ?, last_message = ?,
			last_success_at = CASE WHEN ? THEN ? ELSE last_success_at END
			WHERE policy = ? AND job = ? AND command_id = ? AND command_id != ''`,
			r.LastCommandID, timeArg(r.LastFinishedAt), r.LastSucceeded, r.LastMessage, r.LastSucceeded, timeArg(r.LastFinishedAt),
			r.Policy, r.Job, r.LastCommandID)
		if err != nil {
			return fmt.Errorf("store: %s: %w", op, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("store: %s: %w", op, store.ErrRunInProgress)
		}
		return nil
	})
}

// RecordBackup catalogues a backup, idempotently.
func (s *Store) RecordBackup(ctx context.Context, b store.Backup) (store.Backup, error) {
	var out store.Backup
	err := s.inWriteTx(ctx, "record backup", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO backups (`+backupColumns+`)
			VALUES (NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (id) DO UPDATE SET policy = excluded.policy WHERE backups.policy = ''`,
			b.ID, b.AgentID, b.Database, b.Policy, b.CommandID, timeArg(b.StartedAt), timeArg(b.FinishedAt), b.SizeBytes,
			b.SHA256, b.URI, b.Verified, timeArg(b.DrillAt), b.DrillSucceeded, b.DrillMessage, b.DrillCommandID,
			int64(b.DrillRestore), int64(b.DrillRPO), timeArg(b.PrunedAt), b.Name, b.Type)
		if err != nil {
			return fmt.Errorf("store: record backup %q: %w", b.ID, err)
		}
		out, err = scanBackup(tx.QueryRowContext(ctx, `SELECT `+backupColumns+` FROM backups WHERE id = ?`, b.ID))
		if err != nil {
			return fmt.Errorf("store: record backup %q: read back: %w", b.ID, err)
		}
		return nil
	})
	return out, err
}

// GetBackup returns a catalogued backup or ErrNotFound.
func (s *Store) GetBackup(ctx context.Context, id string) (store.Backup, error) {
	b, err := scanBackup(s.read.QueryRowContext(ctx, `SELECT `+backupColumns+` FROM backups WHERE id = ?`, id))
	return found(b, err, "get backup", id)
}

// ListBackups returns catalogued backups, highest Seq first.
func (s *Store) ListBackups(ctx context.Context, q store.BackupQuery) ([]store.Backup, error) {
	var (
		where []string
		args  []any
	)
	for _, f := range []struct{ col, val string }{{"agent_id", q.AgentID}, {"database_name", q.Database}, {"policy", q.Policy}, {"name", q.Name}} {
		if f.val != "" {
			where = append(where, f.col+" = ?")
			args = append(args, f.val)
		}
	}
	if q.Verified != nil {
		where = append(where, "verified = ?")
		args = append(args, *q.Verified)
	}
	if q.BeforeSeq > 0 {
		where = append(where, "seq < ?")
		args = append(args, q.BeforeSeq)
	}
	query, args := listQuery(`SELECT `+backupColumns+` FROM backups`, where, args, "seq DESC", q.Limit)
	return queryAll(ctx, s.read, "list backups", scanBackup, query, args...)
}

// RecordBackupDrill sets the last drill of a backup.
func (s *Store) RecordBackupDrill(ctx context.Context, d store.BackupDrill) error {
	return s.inWriteTx(ctx, "record backup drill", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE backups SET drill_at = ?, drill_succeeded = ?, drill_message = ?,
			drill_command_id = ?, drill_restore_ns = ?, drill_rpo_ns = ? WHERE id = ?`,
			timeArg(d.At), d.Succeeded, d.Message, d.CommandID, int64(d.Restore), int64(d.RPO), d.BackupID)
		if err != nil {
			return fmt.Errorf("store: record drill of backup %q: %w", d.BackupID, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("store: record drill of backup %q: %w", d.BackupID, store.ErrNotFound)
		}
		return nil
	})
}

// MarkBackupsPruned sets the pruned time of backups not yet pruned.
func (s *Store) MarkBackupsPruned(ctx context.Context, ids []string, at time.Time) error {
	if len(ids) == 0 {
		return nil
	}
	return s.inWriteTx(ctx, "mark backups pruned", func(tx *sql.Tx) error {
		cond, args := inList("id", ids, []any{timeArg(at)})
		if _, err := tx.ExecContext(ctx, `UPDATE backups SET pruned_at = ? WHERE pruned_at IS NULL AND `+cond, args...); err != nil {
			return fmt.Errorf("store: mark %d backups pruned: %w", len(ids), err)
		}
		return nil
	})
}

// LatestBackups returns the newest backups per agent and database.
func (s *Store) LatestBackups(ctx context.Context) (store.LatestBackups, error) {
	var out store.LatestBackups
	dst := []*[]store.Backup{&out.Verified, &out.Drilled, &out.DrillSucceeded}
	for i, q := range store.LatestBackupQueries() {
		list, err := queryAll(ctx, s.read, "latest backups", scanBackup, q)
		if err != nil {
			return store.LatestBackups{}, err
		}
		*dst[i] = list
	}
	return out, nil
}

func scanBackupPolicy(row rowScanner) (store.BackupPolicy, error) {
	var p store.BackupPolicy
	err := row.Scan(&p.Name, blobCol{&p.Spec}, &p.CreatedBy, timeCol{&p.CreatedAt}, timeCol{&p.UpdatedAt})
	return p, err
}

func scanBackupPolicyRun(row rowScanner) (store.BackupPolicyRun, error) {
	var r store.BackupPolicyRun
	err := row.Scan(&r.Policy, &r.Job, timeCol{&r.LastSlot}, &r.CommandID, timeCol{&r.StartedAt}, &r.LastCommandID,
		timeCol{&r.LastFinishedAt}, &r.LastSucceeded, &r.LastMessage, timeCol{&r.LastSuccessAt})
	return r, err
}

func scanBackup(row rowScanner) (store.Backup, error) {
	var b store.Backup
	var restore, rpo int64
	err := row.Scan(&b.Seq, &b.ID, &b.AgentID, &b.Database, &b.Policy, &b.CommandID, timeCol{&b.StartedAt},
		timeCol{&b.FinishedAt}, &b.SizeBytes, &b.SHA256, &b.URI, &b.Verified, timeCol{&b.DrillAt}, &b.DrillSucceeded,
		&b.DrillMessage, &b.DrillCommandID, &restore, &rpo, timeCol{&b.PrunedAt}, &b.Name, &b.Type)
	b.DrillRestore, b.DrillRPO = time.Duration(restore), time.Duration(rpo)
	return b, err
}
