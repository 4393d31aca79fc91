package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"

	"flotilla.dev/controlplane/internal/store"
)

const rolloutControlColumns = store.RolloutControlColumns

// CreateRolloutControl stores an operator's request on a rollout.
func (s *Store) CreateRolloutControl(ctx context.Context, c store.RolloutControl) (store.RolloutControl, error) {
	var out store.RolloutControl
	err := s.inWriteTx(ctx, "create rollout control", func(tx *sql.Tx) error {
		var one int
		err := tx.QueryRowContext(ctx, `SELECT 1 FROM rollouts WHERE id = ?`, c.RolloutID).Scan(&one)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("store: create rollout control: rollout %q: %w", c.RolloutID, store.ErrNotFound)
		case err != nil:
			return fmt.Errorf("store: create rollout control of %q: %w", c.RolloutID, err)
		}
		out, err = scanRolloutControl(tx.QueryRowContext(ctx, `INSERT INTO rollout_controls
			(rollout_id, op, reason, rollback, requested_at, answered_at, code, answer) VALUES (?, ?, ?, ?, ?, NULL, 0, '')
			RETURNING `+rolloutControlColumns, c.RolloutID, c.Op, c.Reason, c.Rollback, timeArg(c.RequestedAt)))
		if err != nil {
			return fmt.Errorf("store: create rollout control of %q: %w", c.RolloutID, err)
		}
		return nil
	})
	return out, err
}

// GetRolloutControl returns a request or ErrNotFound.
func (s *Store) GetRolloutControl(ctx context.Context, seq int64) (store.RolloutControl, error) {
	c, err := scanRolloutControl(s.read.QueryRowContext(ctx, `SELECT `+rolloutControlColumns+` FROM rollout_controls WHERE seq = ?`, seq))
	return found(c, err, "get rollout control", strconv.FormatInt(seq, 10))
}

// ListPendingRolloutControls returns a rollout's unanswered requests by seq.
func (s *Store) ListPendingRolloutControls(ctx context.Context, rolloutID string) ([]store.RolloutControl, error) {
	return queryAll(ctx, s.read, fmt.Sprintf("list pending rollout controls of %q", rolloutID), scanRolloutControl,
		`SELECT `+rolloutControlColumns+` FROM rollout_controls WHERE rollout_id = ? AND answered_at IS NULL ORDER BY seq`, rolloutID)
}

// AnswerRolloutControl stores the answer to a pending request under fence.
func (s *Store) AnswerRolloutControl(ctx context.Context, c store.RolloutControl, fence *store.Fence) error {
	return s.inWriteTx(ctx, "answer rollout control", func(tx *sql.Tx) error {
		if err := checkFence(ctx, tx, fence); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `UPDATE rollout_controls SET answered_at = ?, code = ?, answer = ?
			WHERE seq = ? AND answered_at IS NULL`, timeArg(c.AnsweredAt), c.Code, c.Answer, c.Seq)
		if err != nil {
			return fmt.Errorf("store: answer rollout control %d: %w", c.Seq, err)
		}
		if n, _ := res.RowsAffected(); n == 1 {
			return nil
		}
		var answered sql.NullInt64
		err = tx.QueryRowContext(ctx, `SELECT answered_at FROM rollout_controls WHERE seq = ?`, c.Seq).Scan(&answered)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("store: answer rollout control %d: %w", c.Seq, store.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("store: answer rollout control %d: %w", c.Seq, err)
		}
		return fmt.Errorf("store: answer rollout control %d: already answered: %w", c.Seq, store.ErrConflict)
	})
}

func scanRolloutControl(row rowScanner) (store.RolloutControl, error) {
	var c store.RolloutControl
	err := row.Scan(&c.Seq, &c.RolloutID, &c.Op, &c.Reason, &c.Rollback, timeCol{&c.RequestedAt}, timeCol{&c.AnsweredAt}, &c.Code, &c.Answer)
	return c, err
}
