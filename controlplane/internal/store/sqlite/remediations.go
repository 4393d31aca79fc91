package sqlite

import (
	"context"
	"database/sql"
	"fmt"

	"flotilla.dev/controlplane/internal/store"
)

// AddRemediation stores a remediation event under fence; an ID stored
// already is left as it is (added false).
func (s *Store) AddRemediation(ctx context.Context, r store.Remediation, fence *store.Fence) (bool, error) {
	added := false
	err := s.inWriteTx(ctx, "add remediation", func(tx *sql.Tx) error {
		if err := checkFence(ctx, tx, fence); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO remediations (`+store.RemediationColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (id) DO NOTHING`,
			r.ID, r.Service, r.AgentID, r.Action, r.Reason, r.Evidence, r.RolloutID, timeArg(r.OccurredAt))
		if err != nil {
			return fmt.Errorf("store: add remediation %q: %w", r.ID, err)
		}
		n, _ := res.RowsAffected()
		added = n == 1
		return nil
	})
	return added, err
}

// ListRemediations returns the events q selects, newest first.
func (s *Store) ListRemediations(ctx context.Context, q store.RemediationQuery) ([]store.Remediation, error) {
	var where []string
	var args []any
	for _, c := range []struct{ col, v string }{{"service", q.Service}, {"agent_id", q.AgentID}, {"action", q.Action}} {
		if c.v != "" {
			where, args = append(where, c.col+" = ?"), append(args, c.v)
		}
	}
	if !q.Since.IsZero() {
		where, args = append(where, "occurred_at >= ?"), append(args, timeArg(q.Since))
	}
	query, args := listQuery(`SELECT `+store.RemediationColumns+` FROM remediations`, where, args, "occurred_at DESC, id DESC", q.Limit)
	return queryAll(ctx, s.read, "list remediations", scanRemediation, query, args...)
}

func scanRemediation(row rowScanner) (store.Remediation, error) {
	var r store.Remediation
	err := row.Scan(&r.ID, &r.Service, &r.AgentID, &r.Action, &r.Reason, &r.Evidence, &r.RolloutID, timeCol{&r.OccurredAt})
	return r, err
}

// DeleteRemediation removes an event under fence.
func (s *Store) DeleteRemediation(ctx context.Context, id string, fence *store.Fence) error {
	return s.inWriteTx(ctx, "delete remediation", func(tx *sql.Tx) error {
		if err := checkFence(ctx, tx, fence); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM remediations WHERE id = ?`, id); err != nil {
			return fmt.Errorf("store: delete remediation %q: %w", id, err)
		}
		return nil
	})
}
