package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"flotilla.dev/controlplane/internal/store"
)

const fleetCommandColumns = store.FleetCommandColumns

const hostCommandColumns = store.HostCommandColumns

// hostCommandColumnList is hostCommandColumns for COPY.
var hostCommandColumnList = []string{"id", "fleet_command_id", "agent_id", "kind", "spec", "state", "message", "result",
	"created_at", "released_at", "deadline", "sent_at", "started_at", "finished_at", "cancel_reason"}

// CreateFleetCommand inserts fc and its host commands in one transaction.
func (s *Store) CreateFleetCommand(ctx context.Context, fc store.FleetCommand, hosts []store.HostCommand) error {
	return s.inTx(ctx, "create fleet command", func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO fleet_commands (`+fleetCommandColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
			fc.ID, fc.Kind, fc.Request, fc.CreatedBy, fc.State, timeArg(fc.CreatedAt), timeArg(fc.FinishedAt), fc.Summary)
		if isConflict(err) {
			return fmt.Errorf("store: create fleet command %q: %w", fc.ID, store.ErrConflict)
		}
		if err != nil {
			return wrap(err, "create fleet command %q", fc.ID)
		}
		return insertHostCommands(ctx, tx, hosts)
	})
}

// CreateHostCommands inserts host commands in one transaction.
func (s *Store) CreateHostCommands(ctx context.Context, hosts []store.HostCommand) error {
	if len(hosts) == 0 {
		return nil
	}
	return s.inTx(ctx, "create host commands", func(tx pgx.Tx) error {
		return insertHostCommands(ctx, tx, hosts)
	})
}

// insertHostCommands copies hosts into host_commands (COPY: one stream
// however many there are); an existing ID returns ErrConflict.
func insertHostCommands(ctx context.Context, tx pgx.Tx, hosts []store.HostCommand) error {
	if len(hosts) == 0 {
		return nil
	}
	_, err := tx.CopyFrom(ctx, pgx.Identifier{"host_commands"}, hostCommandColumnList,
		pgx.CopyFromSlice(len(hosts), func(i int) ([]any, error) {
			h := hosts[i]
			return []any{h.ID, nullString(h.FleetCommandID), h.AgentID, h.Kind, h.Spec, h.State, h.Message, h.Result,
				timeArg(h.CreatedAt), timeArg(h.ReleasedAt), timeArg(h.Deadline), timeArg(h.SentAt), timeArg(h.StartedAt),
				timeArg(h.FinishedAt), h.CancelReason}, nil
		}))
	if isConflict(err) {
		return fmt.Errorf("store: create host commands: %w: %w", store.ErrConflict, err)
	}
	if err != nil {
		return wrap(err, "create host commands")
	}
	return nil
}

// updateHostCommands writes the mutable fields of a set of host commands
// (one per ID) in one statement, from unnested arrays. The table's
// triggers give each row its change_seq and wake the other replicas.
const updateHostCommands = `UPDATE host_commands AS h SET
	state = u.state, message = u.message, result = u.result, released_at = u.released_at, deadline = u.deadline,
	sent_at = u.sent_at, started_at = u.started_at, finished_at = u.finished_at, change_seq = nextval('host_command_changes'),
	cancel_reason = CASE WHEN u.cancel_reason = '' THEN h.cancel_reason ELSE u.cancel_reason END
FROM unnest($1::text[], $2::int4[], $3::text[], $4::bytea[], $5::int8[], $6::int8[], $7::int8[], $8::int8[], $9::int8[], $10::text[])
	AS u(id, state, message, result, released_at, deadline, sent_at, started_at, finished_at, cancel_reason)
WHERE h.id = u.id`

// UpdateHostCommands writes the mutable fields of host commands in one
// transaction and one statement (after the check of their fences, in the
// same transaction, when they have any); of several entries with one ID,
// the last is written, as if they were applied in order.
func (s *Store) UpdateHostCommands(ctx context.Context, hosts []store.HostCommand, fences map[string]*store.Fence, events []store.CommandEvent) error {
	if len(hosts) == 0 && len(events) == 0 {
		return nil
	}
	last := make(map[string]int, len(hosts))
	for i, h := range hosts {
		last[h.ID] = i
	}
	n := len(last)
	ids, states, messages, results := make([]string, 0, n), make([]int32, 0, n), make([]string, 0, n), make([][]byte, 0, n)
	reasons := make([]string, 0, n)
	times := make([][]*int64, 5)
	for i, h := range hosts {
		if last[h.ID] != i {
			continue
		}
		ids, states, messages, results = append(ids, h.ID), append(states, h.State), append(messages, h.Message), append(results, h.Result)
		reasons = append(reasons, h.CancelReason)
		for j, t := range []time.Time{h.ReleasedAt, h.Deadline, h.SentAt, h.StartedAt, h.FinishedAt} {
			v, err := nanos(t)
			if err != nil {
				return fmt.Errorf("store: update host command %q: %w", h.ID, err)
			}
			times[j] = append(times[j], v)
		}
	}
	args := []any{ids, states, messages, results, times[0], times[1], times[2], times[3], times[4], reasons}
	checks := store.DistinctFences(hosts, events, fences)
	if len(checks) == 0 && len(events) == 0 {
		if _, err := s.pool.Exec(ctx, updateHostCommands, args...); err != nil {
			return wrap(err, "update host commands")
		}
		return nil
	}
	return s.inTx(ctx, "update host commands", func(tx pgx.Tx) error {
		if err := checkFences(ctx, tx, checks); err != nil {
			return err
		}
		if len(ids) > 0 {
			if _, err := tx.Exec(ctx, updateHostCommands, args...); err != nil {
				return wrap(err, "update host commands")
			}
		}
		return insertCommandEvents(ctx, tx, events)
	})
}

// GetFleetCommand returns a fleet command or ErrNotFound.
func (s *Store) GetFleetCommand(ctx context.Context, id string) (store.FleetCommand, error) {
	fc, err := scanFleetCommand(s.pool.QueryRow(ctx, `SELECT `+fleetCommandColumns+` FROM fleet_commands WHERE id = $1`, id))
	return found(fc, err, "get fleet command", id)
}

// ListFleetCommands returns fleet commands newest first.
func (s *Store) ListFleetCommands(ctx context.Context, q store.FleetCommandQuery) ([]store.FleetCommand, error) {
	var w where
	if len(q.States) > 0 {
		w.in("state", q.States)
	}
	if q.Before != "" {
		w.add("(created_at, id) < (SELECT created_at, id FROM fleet_commands WHERE id = ?)", q.Before)
	}
	query, args := w.query(`SELECT `+fleetCommandColumns+` FROM fleet_commands`, "created_at DESC, id DESC", q.Limit)
	return queryAll(ctx, s.pool, "list fleet commands", scanFleetCommand, query, args...)
}

// UpdateFleetCommand sets a fleet command's state, finish time and
// summary, under fence when it is not nil.
func (s *Store) UpdateFleetCommand(ctx context.Context, id string, state int32, finishedAt time.Time, summary string, fence *store.Fence) error {
	return s.inTx(ctx, "update fleet command", func(tx pgx.Tx) error {
		if err := checkFence(ctx, tx, fence); err != nil {
			return fmt.Errorf("%w (update fleet command %q)", err, id)
		}
		tag, err := tx.Exec(ctx, `UPDATE fleet_commands SET state = $1, finished_at = $2, summary = $3 WHERE id = $4`,
			state, timeArg(finishedAt), summary, id)
		if err != nil {
			return wrap(err, "update fleet command %q", id)
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("store: update fleet command %q: %w", id, store.ErrNotFound)
		}
		return nil
	})
}

// GetHostCommand returns a host command or ErrNotFound.
func (s *Store) GetHostCommand(ctx context.Context, id string) (store.HostCommand, error) {
	h, err := scanHostCommand(s.pool.QueryRow(ctx, `SELECT `+hostCommandColumns+` FROM host_commands WHERE id = $1`, id))
	return found(h, err, "get host command", id)
}

// ListHostCommands returns the host commands of a fleet command, by agent ID.
func (s *Store) ListHostCommands(ctx context.Context, fleetCommandID string) ([]store.HostCommand, error) {
	return queryAll(ctx, s.pool, "list host commands", scanHostCommand,
		`SELECT `+hostCommandColumns+` FROM host_commands WHERE fleet_command_id = $1 ORDER BY agent_id, id`, fleetCommandID)
}

// ListActiveHostCommands returns every host command not yet finished.
func (s *Store) ListActiveHostCommands(ctx context.Context) ([]store.HostCommand, error) {
	return queryAll(ctx, s.pool, "list active host commands", scanHostCommand,
		`SELECT `+hostCommandColumns+` FROM host_commands WHERE finished_at IS NULL ORDER BY agent_id, created_at, id`)
}

// ListAgentActiveHostCommands returns an agent's released, unfinished host
// commands, oldest first.
func (s *Store) ListAgentActiveHostCommands(ctx context.Context, agentID string) ([]store.HostCommand, error) {
	return queryAll(ctx, s.pool, "list agent active host commands", scanHostCommand,
		`SELECT `+hostCommandColumns+` FROM host_commands
		WHERE finished_at IS NULL AND agent_id = $1 AND released_at IS NOT NULL ORDER BY created_at, id`, agentID)
}

// ListHostCommandChanges returns the host commands changed after afterSeq,
// by change seq (see store.CommandStore; migration 0008 says why no later
// commit can fall below a seq already read).
func (s *Store) ListHostCommandChanges(ctx context.Context, afterSeq int64, limit int) ([]store.HostCommand, error) {
	var w where
	w.add("change_seq > ?", afterSeq)
	query, args := w.query(`SELECT `+hostCommandColumns+` FROM host_commands`, "change_seq", limit)
	return queryAll(ctx, s.pool, "list host command changes", scanHostCommand, query, args...)
}

// LastHostCommandChange returns the highest change seq of the host
// commands (the index's last entry).
func (s *Store) LastHostCommandChange(ctx context.Context) (int64, error) {
	var seq int64
	if err := s.pool.QueryRow(ctx, `SELECT COALESCE(MAX(change_seq), 0) FROM host_commands`).Scan(&seq); err != nil {
		return 0, wrap(err, "last host command change")
	}
	return seq, nil
}

func scanFleetCommand(row pgx.Row) (store.FleetCommand, error) {
	var fc store.FleetCommand
	err := row.Scan(&fc.ID, &fc.Kind, &fc.Request, &fc.CreatedBy, &fc.State, timeCol{&fc.CreatedAt}, timeCol{&fc.FinishedAt}, &fc.Summary)
	return fc, err
}

func scanHostCommand(row pgx.Row) (store.HostCommand, error) {
	var (
		h       store.HostCommand
		fleetID *string
	)
	err := row.Scan(&h.ID, &fleetID, &h.AgentID, &h.Kind, &h.Spec, &h.State, &h.Message, &h.Result,
		timeCol{&h.CreatedAt}, timeCol{&h.ReleasedAt}, timeCol{&h.Deadline}, timeCol{&h.SentAt}, timeCol{&h.StartedAt}, timeCol{&h.FinishedAt},
		&h.CancelReason, &h.ChangeSeq)
	if fleetID != nil {
		h.FleetCommandID = *fleetID
	}
	return h, err
}
