package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"

	"flotilla.dev/controlplane/internal/store"
)

// AddRemediation stores a remediation event under fence; an ID stored
// already is left as it is (added false).
func (s *Store) AddRemediation(ctx context.Context, r store.Remediation, fence *store.Fence) (bool, error) {
	added := false
	err := s.inTx(ctx, "add remediation", func(tx pgx.Tx) error {
		if err := checkFence(ctx, tx, fence); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `INSERT INTO remediations (`+store.RemediationColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
			ON CONFLICT (id) DO NOTHING`,
			r.ID, r.Service, r.AgentID, r.Action, r.Reason, r.Evidence, r.RolloutID, timeArg(r.OccurredAt))
		if err != nil {
			return wrap(err, "add remediation %q", r.ID)
		}
		added = tag.RowsAffected() == 1
		return nil
	})
	return added, err
}

// ListRemediations returns the events q selects, newest first.
func (s *Store) ListRemediations(ctx context.Context, q store.RemediationQuery) ([]store.Remediation, error) {
	var w where
	for _, c := range []struct{ col, v string }{{"service", q.Service}, {"agent_id", q.AgentID}, {"action", q.Action}} {
		if c.v != "" {
			w.add(c.col+" = ?", c.v)
		}
	}
	if !q.Since.IsZero() {
		w.add("occurred_at >= ?", timeArg(q.Since))
	}
	query, args := w.query(`SELECT `+store.RemediationColumns+` FROM remediations`, "occurred_at DESC, id DESC", q.Limit)
	return queryAll(ctx, s.pool, "list remediations", scanRemediation, query, args...)
}

func scanRemediation(row pgx.Row) (store.Remediation, error) {
	var r store.Remediation
	err := row.Scan(&r.ID, &r.Service, &r.AgentID, &r.Action, &r.Reason, &r.Evidence, &r.RolloutID, timeCol{&r.OccurredAt})
	return r, err
}

// DeleteRemediation removes an event under fence.
func (s *Store) DeleteRemediation(ctx context.Context, id string, fence *store.Fence) error {
	return s.inTx(ctx, "delete remediation", func(tx pgx.Tx) error {
		if err := checkFence(ctx, tx, fence); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM remediations WHERE id = $1`, id); err != nil {
			return wrap(err, "delete remediation %q", id)
		}
		return nil
	})
}
