package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"time"

	"flotilla.dev/controlplane/internal/store"
)

const fleetCommandColumns = store.FleetCommandColumns

const hostCommandColumns = store.HostCommandColumns

// hostCommandInsertColumns are the columns an insert writes: cancel_reason
// is written apart when set (rarely), so that the common insert is short.
const hostCommandInsertColumns = `id, fleet_command_id, agent_id, kind, spec, state, message, result,
	created_at, released_at, deadline, sent_at, started_at, finished_at, change_seq`

// CreateFleetCommand inserts fc and its host commands in one transaction.
func (s *Store) CreateFleetCommand(ctx context.Context, fc store.FleetCommand, hosts []store.HostCommand) error {
	return s.inChangeTx(ctx, "create fleet command", len(hosts), func(tx *sql.Tx, seq int64) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO fleet_commands (`+fleetCommandColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
			fc.ID, fc.Kind, blobArg(fc.Request), fc.CreatedBy, fc.State, timeArg(fc.CreatedAt), timeArg(fc.FinishedAt), fc.Summary)
		if isConflict(err) {
			return fmt.Errorf("store: create fleet command %q: %w", fc.ID, store.ErrConflict)
		}
		if err != nil {
			return fmt.Errorf("store: create fleet command %q: %w", fc.ID, err)
		}
		return insertHostCommands(ctx, tx, hosts, seq)
	})
}

// CreateHostCommands inserts host commands in one transaction.
func (s *Store) CreateHostCommands(ctx context.Context, hosts []store.HostCommand) error {
	return s.inChangeTx(ctx, "create host commands", len(hosts), func(tx *sql.Tx, seq int64) error {
		return insertHostCommands(ctx, tx, hosts, seq)
	})
}

// insertHostCommands inserts hosts numbered from change seq seq (see
// inChangeTx).
func insertHostCommands(ctx context.Context, tx *sql.Tx, hosts []store.HostCommand, seq int64) error {
	if len(hosts) == 0 {
		return nil
	}
	stmt, err := tx.PrepareContext(ctx, `INSERT INTO host_commands (`+hostCommandInsertColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return fmt.Errorf("store: create host commands: %w", err)
	}
	defer stmt.Close()
	for _, h := range hosts {
		var fleetID any
		if h.FleetCommandID != "" {
			fleetID = h.FleetCommandID
		}
		_, err := stmt.ExecContext(ctx, h.ID, fleetID, h.AgentID, h.Kind, blobArg(h.Spec), h.State, h.Message, blobArg(h.Result),
			timeArg(h.CreatedAt), timeArg(h.ReleasedAt), timeArg(h.Deadline), timeArg(h.SentAt), timeArg(h.StartedAt), timeArg(h.FinishedAt), seq)
		if err == nil && h.CancelReason != "" {
			_, err = tx.ExecContext(ctx, `UPDATE host_commands SET cancel_reason = ? WHERE id = ?`, h.CancelReason, h.ID)
		}
		if isConflict(err) {
			return fmt.Errorf("store: create host command %q: %w", h.ID, store.ErrConflict)
		}
		if err != nil {
			return fmt.Errorf("store: create host command %q: %w", h.ID, err)
		}
		seq++
	}
	return nil
}

// changeSeqBlock is how many change seqs the store reserves in the
// sequences table at once, so that a transaction draws its seqs from
// memory and writes the table once per block, not once per transaction.
const changeSeqBlock = 1 << 16

// changeSeqs hands out host command change seqs from the block reserved
// in the sequences table.
type changeSeqs struct {
	mu    sync.Mutex
	next  int64 // next seq to give
	limit int64 // last seq reserved; 0: read the table first
}

// draw returns the first of n change seqs for host commands written in tx;
// the others follow it. The writer connection serializes transactions, so
// seq order is commit order. When it reserved a block, reserved is true:
// the reservation is part of tx, and a tx that does not commit must call
// forget.
func (c *changeSeqs) draw(ctx context.Context, tx *sql.Tx, n int) (first int64, reserved bool, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.limit == 0 || c.next+int64(n)-1 > c.limit {
		var stored int64
		if err := tx.QueryRowContext(ctx, `SELECT value FROM sequences WHERE name = 'host_command_changes'`).Scan(&stored); err != nil {
			return 0, false, fmt.Errorf("read change seq: %w", err)
		}
		next := max(c.next, stored+1)
		limit := next + int64(n) - 1 + changeSeqBlock
		if _, err := tx.ExecContext(ctx, `UPDATE sequences SET value = ? WHERE name = 'host_command_changes'`, limit); err != nil {
			return 0, false, fmt.Errorf("reserve change seqs: %w", err)
		}
		c.next, c.limit, reserved = next, limit, true
	}
	first = c.next
	c.next += int64(n)
	return first, reserved, nil
}

// forget drops the reserved block of a transaction that did not commit:
// the next draw reads the table again (and never gives a seq twice).
func (c *changeSeqs) forget() {
	c.mu.Lock()
	c.limit = 0
	c.mu.Unlock()
}

// inChangeTx runs fn, which writes n host commands numbered from the
// first seq it is given, in a write transaction.
func (s *Store) inChangeTx(ctx context.Context, op string, n int, fn func(tx *sql.Tx, seq int64) error) error {
	reserved := false
	err := s.inWriteTx(ctx, op, func(tx *sql.Tx) error {
		if n == 0 {
			return fn(tx, 0)
		}
		first, r, err := s.seqs.draw(ctx, tx, n)
		reserved = r
		if err != nil {
			return fmt.Errorf("store: %s: %w", op, err)
		}
		return fn(tx, first)
	})
	if err != nil && reserved {
		s.seqs.forget()
	}
	return err
}

// UpdateHostCommands writes the mutable fields of host commands in one
// transaction, once their fences are checked in it.
func (s *Store) UpdateHostCommands(ctx context.Context, hosts []store.HostCommand, fences map[string]*store.Fence, events []store.CommandEvent) error {
	if len(hosts) == 0 && len(events) == 0 {
		return nil
	}
	checks := store.DistinctFences(hosts, events, fences)
	return s.inChangeTx(ctx, "update host commands", len(hosts), func(tx *sql.Tx, seq int64) error {
		if err := checkFences(ctx, tx, checks); err != nil {
			return err
		}
		if err := insertCommandEvents(ctx, tx, events); err != nil {
			return err
		}
		stmt, err := tx.PrepareContext(ctx, `UPDATE host_commands SET state = ?, message = ?, result = ?,
			released_at = ?, deadline = ?, sent_at = ?, started_at = ?, finished_at = ?, change_seq = ? WHERE id = ?`)
		if err != nil {
			return fmt.Errorf("store: update host commands: %w", err)
		}
		defer stmt.Close()
		for i, h := range hosts {
			if h.CancelReason != "" {
				// Rare (a cancel requested with several control planes):
				// a statement of its own keeps the common one short.
				_, err = tx.ExecContext(ctx, `UPDATE host_commands SET cancel_reason = ? WHERE id = ?`, h.CancelReason, h.ID)
			}
			if err == nil {
				_, err = stmt.ExecContext(ctx, h.State, h.Message, blobArg(h.Result), timeArg(h.ReleasedAt), timeArg(h.Deadline),
					timeArg(h.SentAt), timeArg(h.StartedAt), timeArg(h.FinishedAt), seq+int64(i), h.ID)
			}
			if err != nil {
				return fmt.Errorf("store: update host command %q: %w", h.ID, err)
			}
		}
		return nil
	})
}

// GetFleetCommand returns a fleet command or ErrNotFound.
func (s *Store) GetFleetCommand(ctx context.Context, id string) (store.FleetCommand, error) {
	row := s.read.QueryRowContext(ctx, `SELECT `+fleetCommandColumns+` FROM fleet_commands WHERE id = ?`, id)
	fc, err := scanFleetCommand(row)
	return found(fc, err, "get fleet command", id)
}

// ListFleetCommands returns fleet commands newest first.
func (s *Store) ListFleetCommands(ctx context.Context, q store.FleetCommandQuery) ([]store.FleetCommand, error) {
	var (
		where []string
		args  []any
	)
	if len(q.States) > 0 {
		var cond string
		cond, args = inList("state", q.States, args)
		where = append(where, cond)
	}
	if q.Before != "" {
		where = append(where, "(created_at, id) < (SELECT created_at, id FROM fleet_commands WHERE id = ?)")
		args = append(args, q.Before)
	}
	query, args := listQuery(`SELECT `+fleetCommandColumns+` FROM fleet_commands`, where, args, "created_at DESC, id DESC", q.Limit)
	return queryAll(ctx, s.read, "list fleet commands", scanFleetCommand, query, args...)
}

// UpdateFleetCommand sets a fleet command's state, finish time and
// summary, under fence when it is not nil.
func (s *Store) UpdateFleetCommand(ctx context.Context, id string, state int32, finishedAt time.Time, summary string, fence *store.Fence) error {
	return s.inWriteTx(ctx, "update fleet command", func(tx *sql.Tx) error {
		if err := checkFence(ctx, tx, fence); err != nil {
			return fmt.Errorf("%w (update fleet command %q)", err, id)
		}
		res, err := tx.ExecContext(ctx, `UPDATE fleet_commands SET state = ?, finished_at = ?, summary = ? WHERE id = ?`,
			state, timeArg(finishedAt), summary, id)
		if err != nil {
			return fmt.Errorf("store: update fleet command %q: %w", id, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("store: update fleet command %q: %w", id, store.ErrNotFound)
		}
		return nil
	})
}

// GetHostCommand returns a host command or ErrNotFound.
func (s *Store) GetHostCommand(ctx context.Context, id string) (store.HostCommand, error) {
	row := s.read.QueryRowContext(ctx, `SELECT `+hostCommandColumns+` FROM host_commands WHERE id = ?`, id)
	h, err := scanHostCommand(row)
	return found(h, err, "get host command", id)
}

// ListHostCommands returns the host commands of a fleet command, by agent ID.
func (s *Store) ListHostCommands(ctx context.Context, fleetCommandID string) ([]store.HostCommand, error) {
	return queryAll(ctx, s.read, "list host commands", scanHostCommand,
		`SELECT `+hostCommandColumns+` FROM host_commands WHERE fleet_command_id = ? ORDER BY agent_id, id`, fleetCommandID)
}

// ListActiveHostCommands returns every host command not yet finished.
func (s *Store) ListActiveHostCommands(ctx context.Context) ([]store.HostCommand, error) {
	return queryAll(ctx, s.read, "list active host commands", scanHostCommand,
		`SELECT `+hostCommandColumns+` FROM host_commands WHERE finished_at IS NULL ORDER BY agent_id, created_at, id`)
}

// ListAgentActiveHostCommands returns an agent's released, unfinished host
// commands, oldest first.
func (s *Store) ListAgentActiveHostCommands(ctx context.Context, agentID string) ([]store.HostCommand, error) {
	return queryAll(ctx, s.read, "list agent active host commands", scanHostCommand,
		`SELECT `+hostCommandColumns+` FROM host_commands
		WHERE finished_at IS NULL AND agent_id = ? AND released_at IS NOT NULL ORDER BY created_at, id`, agentID)
}

// ListHostCommandChanges returns the host commands changed after afterSeq,
// by change seq (see store.CommandStore). change_seq has no index in
// SQLite (see migration 0008): one control plane never follows the feed.
func (s *Store) ListHostCommandChanges(ctx context.Context, afterSeq int64, limit int) ([]store.HostCommand, error) {
	query, args := listQuery(`SELECT `+hostCommandColumns+` FROM host_commands`, []string{"change_seq > ?"}, []any{afterSeq}, "change_seq", limit)
	return queryAll(ctx, s.read, "list host command changes", scanHostCommand, query, args...)
}

// LastHostCommandChange returns the highest change seq of the host
// commands (a scan: change_seq has no index in SQLite, see migration 0008).
func (s *Store) LastHostCommandChange(ctx context.Context) (int64, error) {
	var seq int64
	err := s.read.QueryRowContext(ctx, `SELECT COALESCE(MAX(change_seq), 0) FROM host_commands`).Scan(&seq)
	if err != nil {
		return 0, fmt.Errorf("store: last host command change: %w", err)
	}
	return seq, nil
}

func scanFleetCommand(row rowScanner) (store.FleetCommand, error) {
	var fc store.FleetCommand
	err := row.Scan(&fc.ID, &fc.Kind, blobCol{&fc.Request}, &fc.CreatedBy, &fc.State, timeCol{&fc.CreatedAt}, timeCol{&fc.FinishedAt}, &fc.Summary)
	return fc, err
}

func scanHostCommand(row rowScanner) (store.HostCommand, error) {
	var (
		h       store.HostCommand
		fleetID sql.NullString
	)
	err := row.Scan(&h.ID, &fleetID, &h.AgentID, &h.Kind, blobCol{&h.Spec}, &h.State, &h.Message, blobCol{&h.Result},
		timeCol{&h.CreatedAt}, timeCol{&h.ReleasedAt}, timeCol{&h.Deadline}, timeCol{&h.SentAt}, timeCol{&h.StartedAt}, timeCol{&h.FinishedAt},
		&h.CancelReason, &h.ChangeSeq)
	h.FleetCommandID = fleetID.String
	return h, err
}
