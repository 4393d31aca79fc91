package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"flotilla.dev/controlplane/internal/store"
)

// ListAgentsChanged returns at most limit agents whose status_seq is above
// afterSeq, ordered by it (see store.AgentStore).
func (s *Store) ListAgentsChanged(ctx context.Context, afterSeq int64, limit int) ([]store.Agent, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("store: list agents changed: limit: %d must be positive", limit)
	}
	return queryAll(ctx, s.pool, "list agents changed", scanAgent,
		`SELECT `+agentColumns+` FROM agents WHERE status_seq > $1 ORDER BY status_seq LIMIT $2`, afterSeq, limit)
}

// markAgentsLost marks the agents lost whose status_seq is still the one
// given, in one statement (see store.AgentStore).
const markAgentsLost = `UPDATE agents AS a SET
	state = 'lost', state_reason = u.reason, state_changed_at = $4, stream_holder = '',
	status_seq = nextval('agents_status_seq')
FROM unnest($1::text[], $2::int8[], $3::text[]) AS u(id, seq, reason)
WHERE a.id = u.id AND a.status_seq = u.seq AND a.state <> 'lost' AND a.deregistered_at IS NULL
RETURNING a.id`

// MarkAgentsLost marks agents lost by compare-and-set on their status_seq
// (see store.AgentStore).
func (s *Store) MarkAgentsLost(ctx context.Context, losses []store.AgentLoss, now time.Time) ([]string, error) {
	if len(losses) == 0 {
		return nil, nil
	}
	ids, seqs, reasons := make([]string, len(losses)), make([]int64, len(losses)), make([]string, len(losses))
	for i, l := range losses {
		ids[i], seqs[i], reasons[i] = l.ID, l.StatusSeq, l.Reason
	}
	marked, err := queryAll(ctx, s.pool, "mark agents lost", func(row pgx.Row) (string, error) {
		var id string
		return id, row.Scan(&id)
	}, markAgentsLost, ids, seqs, reasons, timeArg(now))
	if err != nil {
		return nil, err
	}
	return marked, nil
}

// LiveLeases returns the unexpired leases whose name starts with prefix
// (see store.LeaseStore).
func (s *Store) LiveLeases(ctx context.Context, prefix string) ([]store.Lease, error) {
	return queryAll(ctx, s.pool, "list live leases", scanLease, `SELECT name, holder, token, expires_at FROM leases
		WHERE starts_with(name, $1) AND expires_at > now() ORDER BY name`, prefix)
}
