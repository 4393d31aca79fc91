package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"flotilla.dev/controlplane/internal/store"
)

// ListAgentsChanged returns at most limit agents whose status_seq is above
// afterSeq, ordered by it (see store.AgentStore).
func (s *Store) ListAgentsChanged(ctx context.Context, afterSeq int64, limit int) ([]store.Agent, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("store: list agents changed: limit: %d must be positive", limit)
	}
	return queryAll(ctx, s.read, "list agents changed", scanAgent,
		`SELECT `+agentColumns+` FROM agents WHERE status_seq > ? ORDER BY status_seq LIMIT ?`, afterSeq, limit)
}

// markAgentLost marks one agent lost if its status_seq is still the one
// given.
const markAgentLost = `UPDATE agents SET
	state = 'lost', state_reason = ?, state_changed_at = ?, stream_holder = '', status_seq = ` + nextStatusSeq + `
WHERE id = ? AND status_seq = ? AND state <> 'lost' AND deregistered_at IS NULL`

// MarkAgentsLost marks agents lost by compare-and-set on their status_seq,
// in one transaction (see store.AgentStore).
func (s *Store) MarkAgentsLost(ctx context.Context, losses []store.AgentLoss, now time.Time) ([]string, error) {
	if len(losses) == 0 {
		return nil, nil
	}
	var marked []string
	err := s.inWriteTx(ctx, "mark agents lost", func(tx *sql.Tx) error {
		marked = marked[:0]
		stmt, err := tx.PrepareContext(ctx, markAgentLost)
		if err != nil {
			return fmt.Errorf("store: mark agents lost: %w", err)
		}
		defer stmt.Close()
		for _, l := range losses {
			res, err := stmt.ExecContext(ctx, l.Reason, timeArg(now), l.ID, l.StatusSeq)
			if err != nil {
				return fmt.Errorf("store: mark agent %q lost: %w", l.ID, err)
			}
			if n, err := res.RowsAffected(); err != nil {
				return fmt.Errorf("store: mark agent %q lost: %w", l.ID, err)
			} else if n > 0 {
				marked = append(marked, l.ID)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return marked, nil
}

// LiveLeases returns the unexpired leases whose name starts with prefix
// (see store.LeaseStore); SQLite's clock is the process's.
func (s *Store) LiveLeases(ctx context.Context, prefix string) ([]store.Lease, error) {
	return queryAll(ctx, s.read, "list live leases", func(row rowScanner) (store.Lease, error) {
		var l store.Lease
		err := row.Scan(&l.Name, &l.Holder, &l.Token, timeCol{&l.ExpiresAt})
		return l, err
	}, `SELECT name, holder, token, expires_at FROM leases
		WHERE substr(name, 1, length(?1)) = ?1 AND expires_at > ?2 ORDER BY name`, prefix, timeArg(now()))
}
