package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"flotilla.dev/controlplane/internal/store"
)

const serviceColumns = store.ServiceColumns

const rolloutColumns = store.RolloutColumns

const rolloutHostColumns = store.RolloutHostColumns

// PutService creates or replaces a service, keeping its creation time.
func (s *Store) PutService(ctx context.Context, svc store.Service) (store.Service, error) {
	out, err := scanService(s.pool.QueryRow(ctx, `INSERT INTO services (`+serviceColumns+`) VALUES ($1, $2, $3, $4)
		ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, updated_at = excluded.updated_at
		RETURNING `+serviceColumns,
		svc.Name, svc.Spec, timeArg(svc.CreatedAt), timeArg(svc.UpdatedAt)))
	if err != nil {
		return store.Service{}, wrap(err, "put service %q", svc.Name)
	}
	return out, nil
}

// GetService returns a service or ErrNotFound.
func (s *Store) GetService(ctx context.Context, name string) (store.Service, error) {
	svc, err := scanService(s.pool.QueryRow(ctx, `SELECT `+serviceColumns+` FROM services WHERE name = $1`, name))
	return found(svc, err, "get service", name)
}

// ListServices returns every service by name.
func (s *Store) ListServices(ctx context.Context) ([]store.Service, error) {
	return queryAll(ctx, s.pool, "list services", scanService, `SELECT `+serviceColumns+` FROM services ORDER BY name`)
}

// CreateRollout inserts a rollout, its hosts and its first events in one
// transaction, refusing a second active rollout of the same service.
func (s *Store) CreateRollout(ctx context.Context, r store.Rollout, hosts []store.RolloutHost, events []store.RolloutEvent) ([]store.RolloutEvent, error) {
	var out []store.RolloutEvent
	err := s.inTx(ctx, "create rollout", func(tx pgx.Tx) error {
		// The check names the active rollout; the unique index behind it
		// holds against another control plane creating one at once.
		if err := checkNoActiveRollout(ctx, tx, r.Service); err != nil {
			return err
		}
		if err := insertRollout(ctx, tx, r); err != nil {
			return err
		}
		if err := insertRolloutHosts(ctx, tx, r.ID, hosts); err != nil {
			return err
		}
		var err error
		out, err = appendRolloutEvents(ctx, tx, r.ID, events)
		return err
	})
	if constraintOf(err) == "rollouts_one_active" {
		// Another transaction created the service's active rollout
		// between the check and the insert: name it.
		if cerr := s.inTx(ctx, "create rollout", func(tx pgx.Tx) error { return checkNoActiveRollout(ctx, tx, r.Service) }); cerr != nil {
			return nil, cerr
		}
	}
	if err != nil {
		return nil, err
	}
	return out, nil
}

func insertRollout(ctx context.Context, tx pgx.Tx, r store.Rollout) error {
	_, err := tx.Exec(ctx, `INSERT INTO rollouts (`+rolloutColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22)`,
		r.ID, r.Service, r.Image, r.RollbackOf, r.CreatedBy, r.Definition, r.ServiceSpec, stringsArg(r.LoadBalancers),
		r.State, r.Message, r.CurrentBatch, r.Prepared, timeArg(r.BatchStartedAt), timeArg(r.BatchFinishedAt),
		r.Stop, r.StopRollback, r.StopState, timeArg(r.CreatedAt), timeArg(r.FinishedAt), timeArg(r.BakeUntil), r.Analysis, timeArg(r.ResumeAt))
	if isConflict(err) {
		return fmt.Errorf("store: create rollout %q: %w: %w", r.ID, store.ErrConflict, err)
	}
	if err != nil {
		return wrap(err, "create rollout %q", r.ID)
	}
	return nil
}

func checkNoActiveRollout(ctx context.Context, tx pgx.Tx, service string) error {
	var id string
	err := tx.QueryRow(ctx, `SELECT id FROM rollouts WHERE service = $1 AND finished_at IS NULL`, service).Scan(&id)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil
	case err != nil:
		return wrap(err, "create rollout: check active rollout of %q", service)
	default:
		return fmt.Errorf("store: create rollout: %w", &store.ActiveRolloutError{Service: service, RolloutID: id})
	}
}

func insertRolloutHosts(ctx context.Context, tx pgx.Tx, rolloutID string, hosts []store.RolloutHost) error {
	if len(hosts) == 0 {
		return nil
	}
	columns := []string{"rollout_id", "agent_id", "batch", "step", "rolling_back", "previous_image", "message",
		"started_at", "finished_at", "step_started_at", "observed_image", "server", "changed", "waiting_offline", "failure", "healthy_since"}
	_, err := tx.CopyFrom(ctx, pgx.Identifier{"rollout_hosts"}, columns, pgx.CopyFromSlice(len(hosts), func(i int) ([]any, error) {
		h := hosts[i]
		return []any{rolloutID, h.AgentID, h.Batch, h.Step, h.RollingBack, h.PreviousImage, h.Message,
			timeArg(h.StartedAt), timeArg(h.FinishedAt), timeArg(h.StepStartedAt), h.ObservedImage, h.Server, h.Changed,
			h.WaitingOffline, h.Failure, timeArg(h.HealthySince)}, nil
	}))
	if err != nil {
		return wrap(err, "create rollout hosts of %q", rolloutID)
	}
	return nil
}

// appendRolloutEvents numbers events after the rollout's last one and
// inserts them. The caller holds the rollout's row lock (or created it), so
// no other transaction numbers events of the rollout at the same time.
func appendRolloutEvents(ctx context.Context, tx pgx.Tx, rolloutID string, events []store.RolloutEvent) ([]store.RolloutEvent, error) {
	if len(events) == 0 {
		return nil, nil
	}
	var last int64
	if err := tx.QueryRow(ctx, `SELECT COALESCE(MAX(sequence), 0) FROM rollout_events WHERE rollout_id = $1`, rolloutID).Scan(&last); err != nil {
		return nil, wrap(err, "append rollout events of %q", rolloutID)
	}
	out := make([]store.RolloutEvent, len(events))
	for i, ev := range events {
		ev.RolloutID, ev.Sequence = rolloutID, last+int64(i)+1
		if ev.Event == nil {
			ev.Event = []byte{}
		}
		out[i] = ev
	}
	_, err := tx.CopyFrom(ctx, pgx.Identifier{"rollout_events"}, []string{"rollout_id", "sequence", "at", "event"},
		pgx.CopyFromSlice(len(out), func(i int) ([]any, error) {
			return []any{rolloutID, out[i].Sequence, timeArg(out[i].At), out[i].Event}, nil
		}))
	if err != nil {
		return nil, wrap(err, "append rollout events of %q", rolloutID)
	}
	return out, nil
}
