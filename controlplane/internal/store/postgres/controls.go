package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5"

	"flotilla.dev/controlplane/internal/store"
)

const rolloutControlColumns = store.RolloutControlColumns

// CreateRolloutControl stores an operator's request on a rollout.
func (s *Store) CreateRolloutControl(ctx context.Context, c store.RolloutControl) (store.RolloutControl, error) {
	out, err := scanRolloutControl(s.pool.QueryRow(ctx, `INSERT INTO rollout_controls
		(rollout_id, op, reason, rollback, requested_at, answered_at, code, answer)
		SELECT id, $2, $3, $4, $5, NULL, 0, '' FROM rollouts WHERE id = $1
		RETURNING `+rolloutControlColumns, c.RolloutID, c.Op, c.Reason, c.Rollback, timeArg(c.RequestedAt)))
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return store.RolloutControl{}, fmt.Errorf("store: create rollout control: rollout %q: %w", c.RolloutID, store.ErrNotFound)
	case err != nil:
		return store.RolloutControl{}, wrap(err, "create rollout control of %q", c.RolloutID)
	}
	return out, nil
}

// GetRolloutControl returns a request or ErrNotFound.
func (s *Store) GetRolloutControl(ctx context.Context, seq int64) (store.RolloutControl, error) {
	c, err := scanRolloutControl(s.pool.QueryRow(ctx, `SELECT `+rolloutControlColumns+` FROM rollout_controls WHERE seq = $1`, seq))
	return found(c, err, "get rollout control", strconv.FormatInt(seq, 10))
}

// ListPendingRolloutControls returns a rollout's unanswered requests by seq.
func (s *Store) ListPendingRolloutControls(ctx context.Context, rolloutID string) ([]store.RolloutControl, error) {
	return queryAll(ctx, s.pool, fmt.Sprintf("list pending rollout controls of %q", rolloutID), scanRolloutControl,
		`SELECT `+rolloutControlColumns+` FROM rollout_controls WHERE rollout_id = $1 AND answered_at IS NULL ORDER BY seq`, rolloutID)
}

// AnswerRolloutControl stores the answer to a pending request under fence.
func (s *Store) AnswerRolloutControl(ctx context.Context, c store.RolloutControl, fence *store.Fence) error {
	return s.inTx(ctx, "answer rollout control", func(tx pgx.Tx) error {
		if err := checkFence(ctx, tx, fence); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `UPDATE rollout_controls SET answered_at = $1, code = $2, answer = $3
			WHERE seq = $4 AND answered_at IS NULL`, timeArg(c.AnsweredAt), c.Code, c.Answer, c.Seq)
		if err != nil {
			return wrap(err, "answer rollout control %d", c.Seq)
		}
		if tag.RowsAffected() == 1 {
			return nil
		}
		var answered *int64
		err = tx.QueryRow(ctx, `SELECT answered_at FROM rollout_controls WHERE seq = $1`, c.Seq).Scan(&answered)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("store: answer rollout control %d: %w", c.Seq, store.ErrNotFound)
		}
		if err != nil {
			return wrap(err, "answer rollout control %d", c.Seq)
		}
		return fmt.Errorf("store: answer rollout control %d: already answered: %w", c.Seq, store.ErrConflict)
	})
}

func scanRolloutControl(row pgx.Row) (store.RolloutControl, error) {
	var c store.RolloutControl
	err := row.Scan(&c.Seq, &c.RolloutID, &c.Op, &c.Reason, &c.Rollback, timeCol{&c.RequestedAt}, timeCol{&c.AnsweredAt}, &c.Code, &c.Answer)
	return c, err
}
