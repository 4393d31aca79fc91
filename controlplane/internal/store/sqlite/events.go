package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"flotilla.dev/controlplane/internal/store"
)

// insertCommandEvents appends events in tx, in order.
func insertCommandEvents(ctx context.Context, tx *sql.Tx, events []store.CommandEvent) error {
	if len(events) == 0 {
		return nil
	}
	stmt, err := tx.PrepareContext(ctx, `INSERT INTO command_events (fleet_command_id, agent_id, event, created_at) VALUES (?, ?, ?, ?)`)
	if err != nil {
		return fmt.Errorf("store: add command events: %w", err)
	}
	defer stmt.Close()
	for _, e := range events {
		if _, err := stmt.ExecContext(ctx, e.FleetCommandID, e.AgentID, blobArg(e.Event), timeArg(e.CreatedAt)); err != nil {
			return fmt.Errorf("store: add command event of %q: %w", e.FleetCommandID, err)
		}
	}
	return nil
}

// ReadFleetCommand reads a fleet command, its hosts and its last event's
// seq in one read transaction (one snapshot of the database).
func (s *Store) ReadFleetCommand(ctx context.Context, id string) (store.FleetCommand, []store.HostCommand, int64, error) {
	var (
		fc   store.FleetCommand
		hcs  []store.HostCommand
		last int64
	)
	err := inTx(ctx, s.read, "read fleet command", func(tx *sql.Tx) error {
		var err error
		fc, err = scanFleetCommand(tx.QueryRowContext(ctx, `SELECT `+fleetCommandColumns+` FROM fleet_commands WHERE id = ?`, id))
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("store: read fleet command %q: %w", id, store.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("store: read fleet command %q: %w", id, err)
		}
		if hcs, err = queryAll(ctx, tx, "read fleet command hosts", scanHostCommand,
			`SELECT `+hostCommandColumns+` FROM host_commands WHERE fleet_command_id = ? ORDER BY agent_id, id`, id); err != nil {
			return err
		}
		err = tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(seq), 0) FROM command_events WHERE fleet_command_id = ?`, id).Scan(&last)
		if err != nil {
			return fmt.Errorf("store: read fleet command %q: last event: %w", id, err)
		}
		return nil
	})
	return fc, hcs, last, err
}

// ListCommandEvents returns a fleet command's events after afterSeq, by
// seq.
func (s *Store) ListCommandEvents(ctx context.Context, fleetCommandID string, afterSeq int64, limit int) ([]store.CommandEvent, error) {
	query, args := listQuery(`SELECT `+store.CommandEventColumns+` FROM command_events`,
		[]string{"fleet_command_id = ?", "seq > ?"}, []any{fleetCommandID, afterSeq}, "seq", limit)
	return queryAll(ctx, s.read, "list command events", scanCommandEvent, query, args...)
}

// PruneCommandEvents deletes the events of fleet commands finished before
// finishedBefore, or gone.
func (s *Store) PruneCommandEvents(ctx context.Context, finishedBefore time.Time) (int64, error) {
	res, err := s.write.ExecContext(ctx, `DELETE FROM command_events WHERE NOT EXISTS (SELECT 1 FROM fleet_commands f
		WHERE f.id = command_events.fleet_command_id AND (f.finished_at IS NULL OR f.finished_at >= ?))`, timeArg(finishedBefore))
	if err != nil {
		return 0, fmt.Errorf("store: prune command events: %w", err)
	}
	n, _ := res.RowsAffected()
	return n, nil
}

func scanCommandEvent(row rowScanner) (store.CommandEvent, error) {
	var e store.CommandEvent
	err := row.Scan(&e.Seq, &e.FleetCommandID, &e.AgentID, blobCol{&e.Event}, timeCol{&e.CreatedAt})
	return e, err
}
