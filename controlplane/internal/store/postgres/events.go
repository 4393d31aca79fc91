package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"flotilla.dev/controlplane/internal/store"
)

// insertCommandEvents appends events in tx, in order, in one statement.
// The table's trigger takes the host commands' writers' lock (one commit
// order for both tables) and wakes the other replicas.
func insertCommandEvents(ctx context.Context, tx pgx.Tx, events []store.CommandEvent) error {
	if len(events) == 0 {
		return nil
	}
	n := len(events)
	fcs, agents, bodies, at := make([]string, n), make([]string, n), make([][]byte, n), make([]*int64, n)
	for i, e := range events {
		v, err := nanos(e.CreatedAt)
		if err != nil {
			return fmt.Errorf("store: add command event of %q: created_at: %w", e.FleetCommandID, err)
		}
		fcs[i], agents[i], bodies[i], at[i] = e.FleetCommandID, e.AgentID, e.Event, v
	}
	// WITH ORDINALITY keeps the order given: seq follows it.
	_, err := tx.Exec(ctx, `INSERT INTO command_events (fleet_command_id, agent_id, event, created_at)
		SELECT u.fleet_command_id, u.agent_id, u.event, u.created_at
		FROM unnest($1::text[], $2::text[], $3::bytea[], $4::int8[]) WITH ORDINALITY AS u(fleet_command_id, agent_id, event, created_at, n)
		ORDER BY u.n`, fcs, agents, bodies, at)
	if err != nil {
		return wrap(err, "add command events")
	}
	return nil
}

// ReadFleetCommand reads a fleet command, its hosts and its last event's
// seq in one repeatable-read transaction: the host commands' writes and
// their events commit together, in seq order (see migration command_events), so the
// snapshot holds exactly the events up to the seq it returns.
func (s *Store) ReadFleetCommand(ctx context.Context, id string) (store.FleetCommand, []store.HostCommand, int64, error) {
	var (
		fc   store.FleetCommand
		hcs  []store.HostCommand
		last int64
	)
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return fc, nil, 0, wrap(err, "read fleet command: begin")
	}
	defer func() { _ = tx.Rollback(ctx) }()
	fc, err = scanFleetCommand(tx.QueryRow(ctx, `SELECT `+fleetCommandColumns+` FROM fleet_commands WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return fc, nil, 0, fmt.Errorf("store: read fleet command %q: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return fc, nil, 0, wrap(err, "read fleet command %q", id)
	}
	if hcs, err = queryAll(ctx, tx, "read fleet command hosts", scanHostCommand,
		`SELECT `+hostCommandColumns+` FROM host_commands WHERE fleet_command_id = $1 ORDER BY agent_id, id`, id); err != nil {
		return fc, nil, 0, err
	}
	if err := tx.QueryRow(ctx, `SELECT COALESCE(MAX(seq), 0) FROM command_events WHERE fleet_command_id = $1`, id).Scan(&last); err != nil {
		return fc, nil, 0, wrap(err, "read fleet command %q: last event", id)
	}
	return fc, hcs, last, nil
}

// ListCommandEvents returns a fleet command's events after afterSeq, by
// seq.
func (s *Store) ListCommandEvents(ctx context.Context, fleetCommandID string, afterSeq int64, limit int) ([]store.CommandEvent, error) {
	var w where
	w.add("fleet_command_id = ?", fleetCommandID)
	w.add("seq > ?", afterSeq)
	query, args := w.query(`SELECT `+store.CommandEventColumns+` FROM command_events`, "seq", limit)
	return queryAll(ctx, s.pool, "list command events", scanCommandEvent, query, args...)
}

// PruneCommandEvents deletes the events of fleet commands finished before
// finishedBefore, or gone.
func (s *Store) PruneCommandEvents(ctx context.Context, finishedBefore time.Time) (int64, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM command_events e WHERE NOT EXISTS (SELECT 1 FROM fleet_commands f
		WHERE f.id = e.fleet_command_id AND (f.finished_at IS NULL OR f.finished_at >= $1))`, timeArg(finishedBefore))
	if err != nil {
		return 0, wrap(err, "prune command events")
	}
	return tag.RowsAffected(), nil
}

func scanCommandEvent(row pgx.Row) (store.CommandEvent, error) {
	var e store.CommandEvent
	err := row.Scan(&e.Seq, &e.FleetCommandID, &e.AgentID, &e.Event, timeCol{&e.CreatedAt})
	return e, err
}
