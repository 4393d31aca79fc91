package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"flotilla.dev/controlplane/internal/store"
)

// UpdateRollout writes one transition of an unfinished rollout. The
// rollout's row is locked first, so that transitions of one rollout (from
// two control planes, say) are applied one after the other.
func (s *Store) UpdateRollout(ctx context.Context, u store.RolloutUpdate) ([]store.RolloutEvent, error) {
	var out []store.RolloutEvent
	err := s.inTx(ctx, "update rollout", func(tx pgx.Tx) error {
		if err := checkFence(ctx, tx, u.Fence); err != nil {
			return err
		}
		var finished *int64
		err := tx.QueryRow(ctx, `SELECT finished_at FROM rollouts WHERE id = $1 FOR UPDATE`, u.RolloutID).Scan(&finished)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			return fmt.Errorf("store: update rollout %q: %w", u.RolloutID, store.ErrNotFound)
		case err != nil:
			return wrap(err, "update rollout %q", u.RolloutID)
		case finished != nil:
			return fmt.Errorf("store: update rollout %q: %w", u.RolloutID, store.ErrRolloutFinished)
		}
		if r := u.Rollout; r != nil {
			if _, err := tx.Exec(ctx, `UPDATE rollouts SET state = $1, message = $2, current_batch = $3, prepared = $4,
				batch_started_at = $5, batch_finished_at = $6, stop = $7, stop_rollback = $8, stop_state = $9, finished_at = $10,
				bake_until = $11, analysis = $12, window_resume_at = $13
				WHERE id = $14`,
				r.State, r.Message, r.CurrentBatch, r.Prepared, timeArg(r.BatchStartedAt), timeArg(r.BatchFinishedAt),
				r.Stop, r.StopRollback, r.StopState, timeArg(r.FinishedAt), timeArg(r.BakeUntil), r.Analysis, timeArg(r.ResumeAt), u.RolloutID); err != nil {
				return wrap(err, "update rollout %q", u.RolloutID)
			}
		}
		if err := updateRolloutHosts(ctx, tx, u.RolloutID, u.Hosts); err != nil {
			return err
		}
		if out, err = appendRolloutEvents(ctx, tx, u.RolloutID, u.Events); err != nil {
			return err
		}
		return insertHostCommands(ctx, tx, u.Commands)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func updateRolloutHosts(ctx context.Context, tx pgx.Tx, rolloutID string, hosts []store.RolloutHost) error {
	if len(hosts) == 0 {
		return nil
	}
	b := &pgx.Batch{}
	for _, h := range hosts {
		b.Queue(`UPDATE rollout_hosts SET batch = $1, step = $2, rolling_back = $3, previous_image = $4,
			message = $5, started_at = $6, finished_at = $7, step_started_at = $8, observed_image = $9, server = $10, changed = $11,
			waiting_offline = $12, failure = $13, healthy_since = $14 WHERE rollout_id = $15 AND agent_id = $16`,
			h.Batch, h.Step, h.RollingBack, h.PreviousImage, h.Message, timeArg(h.StartedAt),
			timeArg(h.FinishedAt), timeArg(h.StepStartedAt), h.ObservedImage, h.Server, h.Changed, h.WaitingOffline, h.Failure,
			timeArg(h.HealthySince), rolloutID, h.AgentID)
	}
	return runBatch(ctx, tx, b, func(i int, err error) error {
		return wrap(err, "update rollout host %s/%s", rolloutID, hosts[i].AgentID)
	}, func(i int, rows int64) error {
		if rows == 0 {
			return fmt.Errorf("store: update rollout host %s/%s: %w", rolloutID, hosts[i].AgentID, store.ErrNotFound)
		}
		return nil
	})
}

// GetRollout returns a rollout or ErrNotFound.
func (s *Store) GetRollout(ctx context.Context, id string) (store.Rollout, error) {
	r, err := scanRollout(s.pool.QueryRow(ctx, `SELECT `+rolloutColumns+` FROM rollouts WHERE id = $1`, id))
	return found(r, err, "get rollout", id)
}

// ListRollouts returns rollouts newest first.
func (s *Store) ListRollouts(ctx context.Context, q store.RolloutQuery) ([]store.Rollout, error) {
	var w where
	if q.Service != "" {
		w.add("service = ?", q.Service)
	}
	if len(q.States) > 0 {
		w.in("state", q.States)
	}
	if q.Active {
		w.add("finished_at IS NULL")
	}
	if q.Before != "" {
		w.add("(created_at, id) < (SELECT created_at, id FROM rollouts WHERE id = ?)", q.Before)
	}
	query, args := w.query(`SELECT `+rolloutColumns+` FROM rollouts`, "created_at DESC, id DESC", q.Limit)
	return queryAll(ctx, s.pool, "list rollouts", scanRollout, query, args...)
}

// ListRolloutHosts returns a rollout's hosts by batch, then agent ID.
func (s *Store) ListRolloutHosts(ctx context.Context, rolloutID string) ([]store.RolloutHost, error) {
	return queryAll(ctx, s.pool, fmt.Sprintf("list rollout hosts of %q", rolloutID), scanRolloutHost,
		`SELECT `+rolloutHostColumns+` FROM rollout_hosts WHERE rollout_id = $1 ORDER BY batch, agent_id`, rolloutID)
}

// ListRolloutEvents returns a rollout's events after a sequence number.
func (s *Store) ListRolloutEvents(ctx context.Context, rolloutID string, after int64, limit int) ([]store.RolloutEvent, error) {
	query := `SELECT rollout_id, sequence, at, event FROM rollout_events WHERE rollout_id = $1 AND sequence > $2 ORDER BY sequence`
	args := []any{rolloutID, after}
	if limit > 0 {
		query += " LIMIT $3"
		args = append(args, limit)
	}
	return queryAll(ctx, s.pool, fmt.Sprintf("list rollout events of %q", rolloutID), func(row pgx.Row) (store.RolloutEvent, error) {
		var ev store.RolloutEvent
		err := row.Scan(&ev.RolloutID, &ev.Sequence, timeCol{&ev.At}, &ev.Event)
		return ev, err
	}, query, args...)
}

func scanService(row pgx.Row) (store.Service, error) {
	var svc store.Service
	err := row.Scan(&svc.Name, &svc.Spec, timeCol{&svc.CreatedAt}, timeCol{&svc.UpdatedAt})
	return svc, err
}

func scanRollout(row pgx.Row) (store.Rollout, error) {
	var r store.Rollout
	err := row.Scan(&r.ID, &r.Service, &r.Image, &r.RollbackOf, &r.CreatedBy, &r.Definition, &r.ServiceSpec,
		stringsCol{&r.LoadBalancers}, &r.State, &r.Message, &r.CurrentBatch, &r.Prepared, timeCol{&r.BatchStartedAt},
		timeCol{&r.BatchFinishedAt}, &r.Stop, &r.StopRollback, &r.StopState, timeCol{&r.CreatedAt}, timeCol{&r.FinishedAt},
		timeCol{&r.BakeUntil}, &r.Analysis, timeCol{&r.ResumeAt})
	return r, err
}

func scanRolloutHost(row pgx.Row) (store.RolloutHost, error) {
	var h store.RolloutHost
	err := row.Scan(&h.RolloutID, &h.AgentID, &h.Batch, &h.Step, &h.RollingBack, &h.PreviousImage, &h.Message,
		timeCol{&h.StartedAt}, timeCol{&h.FinishedAt}, timeCol{&h.StepStartedAt}, &h.ObservedImage, &h.Server, &h.Changed,
		&h.WaitingOffline, &h.Failure, timeCol{&h.HealthySince})
	return h, err
}
