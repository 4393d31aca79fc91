package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"flotilla.dev/controlplane/internal/store"
)

const serviceColumns = store.ServiceColumns

const rolloutColumns = store.RolloutColumns

const rolloutHostColumns = store.RolloutHostColumns

// PutService creates or replaces a service, keeping its creation time.
func (s *Store) PutService(ctx context.Context, svc store.Service) (store.Service, error) {
	var out store.Service
	err := s.inWriteTx(ctx, "put service", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO services (`+serviceColumns+`) VALUES (?, ?, ?, ?)
			ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, updated_at = excluded.updated_at`,
			svc.Name, blobArg(svc.Spec), timeArg(svc.CreatedAt), timeArg(svc.UpdatedAt))
		if err != nil {
			return fmt.Errorf("store: put service %q: %w", svc.Name, err)
		}
		out, err = scanService(tx.QueryRowContext(ctx, `SELECT `+serviceColumns+` FROM services WHERE name = ?`, svc.Name))
		if err != nil {
			return fmt.Errorf("store: put service %q: read back: %w", svc.Name, err)
		}
		return nil
	})
	return out, err
}

// GetService returns a service or ErrNotFound.
func (s *Store) GetService(ctx context.Context, name string) (store.Service, error) {
	svc, err := scanService(s.read.QueryRowContext(ctx, `SELECT `+serviceColumns+` FROM services WHERE name = ?`, name))
	return found(svc, err, "get service", name)
}

// ListServices returns every service by name.
func (s *Store) ListServices(ctx context.Context) ([]store.Service, error) {
	return queryAll(ctx, s.read, "list services", scanService, `SELECT `+serviceColumns+` FROM services ORDER BY name`)
}

// CreateRollout inserts a rollout, its hosts and its first events in one
// transaction, refusing a second active rollout of the same service.
func (s *Store) CreateRollout(ctx context.Context, r store.Rollout, hosts []store.RolloutHost, events []store.RolloutEvent) ([]store.RolloutEvent, error) {
	var out []store.RolloutEvent
	err := s.inWriteTx(ctx, "create rollout", func(tx *sql.Tx) error {
		// The check names the active rollout; the unique index behind it
		// holds even against another process on the same database.
		if err := checkNoActiveRollout(ctx, tx, r.Service); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO rollouts (`+rolloutColumns+`)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			r.ID, r.Service, r.Image, r.RollbackOf, r.CreatedBy, blobArg(r.Definition), blobArg(r.ServiceSpec), stringsArg(r.LoadBalancers),
			r.State, r.Message, r.CurrentBatch, r.Prepared, timeArg(r.BatchStartedAt), timeArg(r.BatchFinishedAt),
			r.Stop, r.StopRollback, r.StopState, timeArg(r.CreatedAt), timeArg(r.FinishedAt), timeArg(r.BakeUntil), blobArg(r.Analysis), timeArg(r.ResumeAt))
		if isConflict(err) {
			if err := checkNoActiveRollout(ctx, tx, r.Service); err != nil {
				return err
			}
			return fmt.Errorf("store: create rollout %q: %w", r.ID, store.ErrConflict)
		}
		if err != nil {
			return fmt.Errorf("store: create rollout %q: %w", r.ID, err)
		}
		if err := insertRolloutHosts(ctx, tx, r.ID, hosts); err != nil {
			return err
		}
		out, err = appendRolloutEvents(ctx, tx, r.ID, events)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func checkNoActiveRollout(ctx context.Context, tx *sql.Tx, service string) error {
	var id string
	err := tx.QueryRowContext(ctx, `SELECT id FROM rollouts WHERE service = ? AND finished_at IS NULL`, service).Scan(&id)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil
	case err != nil:
		return fmt.Errorf("store: create rollout: check active rollout of %q: %w", service, err)
	default:
		return fmt.Errorf("store: create rollout: %w", &store.ActiveRolloutError{Service: service, RolloutID: id})
	}
}

func insertRolloutHosts(ctx context.Context, tx *sql.Tx, rolloutID string, hosts []store.RolloutHost) error {
	if len(hosts) == 0 {
		return nil
	}
	stmt, err := tx.PrepareContext(ctx, `INSERT INTO rollout_hosts (`+rolloutHostColumns+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return fmt.Errorf("store: create rollout hosts: %w", err)
	}
	defer stmt.Close()
	for _, h := range hosts {
		if _, err := stmt.ExecContext(ctx, rolloutID, h.AgentID, h.Batch, h.Step, h.RollingBack, h.PreviousImage, h.Message,
			timeArg(h.StartedAt), timeArg(h.FinishedAt), timeArg(h.StepStartedAt), h.ObservedImage, h.Server, h.Changed,
			h.WaitingOffline, h.Failure, timeArg(h.HealthySince)); err != nil {
			return fmt.Errorf("store: create rollout host %s/%s: %w", rolloutID, h.AgentID, err)
		}
	}
	return nil
}

// appendRolloutEvents numbers events after the rollout's last one and
// inserts them.
func appendRolloutEvents(ctx context.Context, tx *sql.Tx, rolloutID string, events []store.RolloutEvent) ([]store.RolloutEvent, error) {
	if len(events) == 0 {
		return nil, nil
	}
	var last int64
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(sequence), 0) FROM rollout_events WHERE rollout_id = ?`, rolloutID).Scan(&last); err != nil {
		return nil, fmt.Errorf("store: append rollout events of %q: %w", rolloutID, err)
	}
	stmt, err := tx.PrepareContext(ctx, `INSERT INTO rollout_events (rollout_id, sequence, at, event) VALUES (?, ?, ?, ?)`)
	if err != nil {
		return nil, fmt.Errorf("store: append rollout events of %q: %w", rolloutID, err)
	}
	defer stmt.Close()
	out := make([]store.RolloutEvent, len(events))
	for i, ev := range events {
		last++
		ev.RolloutID, ev.Sequence = rolloutID, last
		if ev.Event == nil {
			ev.Event = []byte{}
		}
		if _, err := stmt.ExecContext(ctx, rolloutID, ev.Sequence, timeArg(ev.At), blobArg(ev.Event)); err != nil {
			return nil, fmt.Errorf("store: append rollout event %d of %q: %w", ev.Sequence, rolloutID, err)
		}
		out[i] = ev
	}
	return out, nil
}

// UpdateRollout writes one transition of an unfinished rollout.
func (s *Store) UpdateRollout(ctx context.Context, u store.RolloutUpdate) ([]store.RolloutEvent, error) {
	var out []store.RolloutEvent
	err := s.inChangeTx(ctx, "update rollout", len(u.Commands), func(tx *sql.Tx, seq int64) error {
		if err := checkFence(ctx, tx, u.Fence); err != nil {
			return err
		}
		var finished sql.NullInt64
		err := tx.QueryRowContext(ctx, `SELECT finished_at FROM rollouts WHERE id = ?`, u.RolloutID).Scan(&finished)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("store: update rollout %q: %w", u.RolloutID, store.ErrNotFound)
		case err != nil:
			return fmt.Errorf("store: update rollout %q: %w", u.RolloutID, err)
		case finished.Valid:
			return fmt.Errorf("store: update rollout %q: %w", u.RolloutID, store.ErrRolloutFinished)
		}
		if r := u.Rollout; r != nil {
			if _, err := tx.ExecContext(ctx, `UPDATE rollouts SET state = ?, message = ?, current_batch = ?, prepared = ?,
				batch_started_at = ?, batch_finished_at = ?, stop = ?, stop_rollback = ?, stop_state = ?, finished_at = ?,
				bake_until = ?, analysis = ?, window_resume_at = ?
				WHERE id = ?`,
				r.State, r.Message, r.CurrentBatch, r.Prepared, timeArg(r.BatchStartedAt), timeArg(r.BatchFinishedAt),
				r.Stop, r.StopRollback, r.StopState, timeArg(r.FinishedAt), timeArg(r.BakeUntil), blobArg(r.Analysis), timeArg(r.ResumeAt), u.RolloutID); err != nil {
				return fmt.Errorf("store: update rollout %q: %w", u.RolloutID, err)
			}
		}
		if err := updateRolloutHosts(ctx, tx, u.RolloutID, u.Hosts); err != nil {
			return err
		}
		if out, err = appendRolloutEvents(ctx, tx, u.RolloutID, u.Events); err != nil {
			return err
		}
		return insertHostCommands(ctx, tx, u.Commands, seq)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func updateRolloutHosts(ctx context.Context, tx *sql.Tx, rolloutID string, hosts []store.RolloutHost) error {
	if len(hosts) == 0 {
		return nil
	}
	stmt, err := tx.PrepareContext(ctx, `UPDATE rollout_hosts SET batch = ?, step = ?, rolling_back = ?, previous_image = ?,
		message = ?, started_at = ?, finished_at = ?, step_started_at = ?, observed_image = ?, server = ?, changed = ?,
		waiting_offline = ?, failure = ?, healthy_since = ? WHERE rollout_id = ? AND agent_id = ?`)
	if err != nil {
		return fmt.Errorf("store: update rollout hosts: %w", err)
	}
	defer stmt.Close()
	for _, h := range hosts {
		res, err := stmt.ExecContext(ctx, h.Batch, h.Step, h.RollingBack, h.PreviousImage, h.Message, timeArg(h.StartedAt),
			timeArg(h.FinishedAt), timeArg(h.StepStartedAt), h.ObservedImage, h.Server, h.Changed, h.WaitingOffline, h.Failure,
			timeArg(h.HealthySince), rolloutID, h.AgentID)
		if err != nil {
			return fmt.Errorf("store: update rollout host %s/%s: %w", rolloutID, h.AgentID, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("store: update rollout host %s/%s: %w", rolloutID, h.AgentID, store.ErrNotFound)
		}
	}
	return nil
}

// GetRollout returns a rollout or ErrNotFound.
func (s *Store) GetRollout(ctx context.Context, id string) (store.Rollout, error) {
	r, err := scanRollout(s.read.QueryRowContext(ctx, `SELECT `+rolloutColumns+` FROM rollouts WHERE id = ?`, id))
	return found(r, err, "get rollout", id)
}

// ListRollouts returns rollouts newest first.
func (s *Store) ListRollouts(ctx context.Context, q store.RolloutQuery) ([]store.Rollout, error) {
	var (
		where []string
		args  []any
	)
	if q.Service != "" {
		where = append(where, "service = ?")
		args = append(args, q.Service)
	}
	if len(q.States) > 0 {
		var cond string
		cond, args = inList("state", q.States, args)
		where = append(where, cond)
	}
	if q.Active {
		where = append(where, "finished_at IS NULL")
	}
	if q.Before != "" {
		where = append(where, "(created_at, id) < (SELECT created_at, id FROM rollouts WHERE id = ?)")
		args = append(args, q.Before)
	}
	query, args := listQuery(`SELECT `+rolloutColumns+` FROM rollouts`, where, args, "created_at DESC, id DESC", q.Limit)
	return queryAll(ctx, s.read, "list rollouts", scanRollout, query, args...)
}

// ListRolloutHosts returns a rollout's hosts by batch, then agent ID.
func (s *Store) ListRolloutHosts(ctx context.Context, rolloutID string) ([]store.RolloutHost, error) {
	return queryAll(ctx, s.read, fmt.Sprintf("list rollout hosts of %q", rolloutID), scanRolloutHost,
		`SELECT `+rolloutHostColumns+` FROM rollout_hosts WHERE rollout_id = ? ORDER BY batch, agent_id`, rolloutID)
}

// ListRolloutEvents returns a rollout's events after a sequence number.
func (s *Store) ListRolloutEvents(ctx context.Context, rolloutID string, after int64, limit int) ([]store.RolloutEvent, error) {
	query, args := listQuery(`SELECT rollout_id, sequence, at, event FROM rollout_events`,
		[]string{"rollout_id = ?", "sequence > ?"}, []any{rolloutID, after}, "sequence", limit)
	return queryAll(ctx, s.read, fmt.Sprintf("list rollout events of %q", rolloutID), scanRolloutEvent, query, args...)
}

func scanRolloutHost(row rowScanner) (store.RolloutHost, error) {
	var h store.RolloutHost
	err := row.Scan(&h.RolloutID, &h.AgentID, &h.Batch, &h.Step, &h.RollingBack, &h.PreviousImage, &h.Message,
		timeCol{&h.StartedAt}, timeCol{&h.FinishedAt}, timeCol{&h.StepStartedAt}, &h.ObservedImage, &h.Server, &h.Changed,
		&h.WaitingOffline, &h.Failure, timeCol{&h.HealthySince})
	return h, err
}

func scanRolloutEvent(row rowScanner) (store.RolloutEvent, error) {
	var ev store.RolloutEvent
	err := row.Scan(&ev.RolloutID, &ev.Sequence, timeCol{&ev.At}, blobCol{&ev.Event})
	return ev, err
}

func scanService(row rowScanner) (store.Service, error) {
	var svc store.Service
	err := row.Scan(&svc.Name, blobCol{&svc.Spec}, timeCol{&svc.CreatedAt}, timeCol{&svc.UpdatedAt})
	return svc, err
}

func scanRollout(row rowScanner) (store.Rollout, error) {
	var r store.Rollout
	err := row.Scan(&r.ID, &r.Service, &r.Image, &r.RollbackOf, &r.CreatedBy, blobCol{&r.Definition}, blobCol{&r.ServiceSpec},
		stringsCol{&r.LoadBalancers}, &r.State, &r.Message, &r.CurrentBatch, &r.Prepared, timeCol{&r.BatchStartedAt},
		timeCol{&r.BatchFinishedAt}, &r.Stop, &r.StopRollback, &r.StopState, timeCol{&r.CreatedAt}, timeCol{&r.FinishedAt},
		timeCol{&r.BakeUntil}, blobCol{&r.Analysis}, timeCol{&r.ResumeAt})
	return r, err
}
