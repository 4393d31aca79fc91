package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"flotilla.dev/controlplane/internal/store"
)

// errJoinTokenInvalid is the one answer for every token that cannot admit an
// agent; it never says why.
var errJoinTokenInvalid = fmt.Errorf("store: register agent: %w", store.ErrJoinTokenInvalid)

// agentColumns are the columns every read selects (scanAgent's order);
// agentInsertColumns those RegisterAgent writes: stream_holder and
// status_seq take their defaults ("", the next value of the sequence).
const (
	agentColumns       = store.AgentColumns + ", " + store.AgentViewColumns
	agentInsertColumns = store.AgentColumns
)

// RegisterAgent consumes one use of the join token whose hash is tokenHash
// and inserts the agent build returns, atomically (see store.AgentStore):
// the token is read, build runs, and one statement takes the token's use
// and inserts the agent, committed on its own. That statement re-checks
// everything the read found (uses left, not revoked, not expired at now),
// so a token revoked or used up meanwhile still refuses the agent; and
// the token's row is locked only while the statement runs and commits, a
// single round trip, so that a fleet registering with one token at once
// queues for as little as it can. If build fails nothing is written.
func (s *Store) RegisterAgent(ctx context.Context, tokenHash []byte, now time.Time,
	build func(store.JoinToken) (store.Agent, error)) (store.Agent, error) {
	tok, err := usableJoinToken(ctx, s.pool, tokenHash, now)
	if err != nil {
		return store.Agent{}, err
	}
	a, err := build(tok)
	if err != nil {
		return store.Agent{}, err // the caller's error, as it returned it
	}
	a.JoinTokenID = tok.ID
	return consumeAndInsert(ctx, s.pool, a, now)
}

// RegisteredWithKey returns the registered agent that used the join token
// whose hash is tokenHash with the public key whose SHA-256 is keySHA256
// (see store.AgentStore).
func (s *Store) RegisteredWithKey(ctx context.Context, tokenHash []byte, keySHA256 string, now time.Time) (store.Agent, error) {
	if keySHA256 == "" {
		return store.Agent{}, store.ErrNotFound
	}
	tok, err := joinTokenByHash(ctx, s.pool, tokenHash)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return store.Agent{}, errJoinTokenInvalid
	case err != nil:
		return store.Agent{}, wrap(err, "look up join token")
	case !tok.Live(now):
		return store.Agent{}, errJoinTokenInvalid
	}
	a, err := scanAgent(s.pool.QueryRow(ctx, `SELECT `+agentColumns+` FROM agents
		WHERE join_token_id = $1 AND public_key_sha256 = $2 AND deregistered_at IS NULL`, tok.ID, keySHA256))
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Agent{}, store.ErrNotFound
	}
	if err != nil {
		return store.Agent{}, wrap(err, "look up agent by registration key")
	}
	return a, nil
}

// usableJoinToken returns the token whose hash is tokenHash if it can admit
// one more agent at now. Unknown, expired, revoked and used-up tokens all
// give the same ErrJoinTokenInvalid, so callers cannot tell them apart.
func usableJoinToken(ctx context.Context, q querier, tokenHash []byte, now time.Time) (store.JoinToken, error) {
	tok, err := joinTokenByHash(ctx, q, tokenHash)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.JoinToken{}, errJoinTokenInvalid
	}
	if err != nil {
		return store.JoinToken{}, wrap(err, "register agent: look up join token")
	}
	if !tok.Admits(now) {
		return store.JoinToken{}, errJoinTokenInvalid
	}
	return tok, nil
}

// consumeAndInsertAgent spends one use of the join token $1, if it can
// still admit an agent at $2, and inserts the agent ($3 onwards) only
// then, returning it as stored; no row when the token could not.
const consumeAndInsertAgent = `WITH used AS (
	UPDATE join_tokens SET uses = uses + 1
	WHERE id = $1 AND uses < max_uses AND revoked_at IS NULL AND expires_at > $2
	RETURNING id)
INSERT INTO agents (` + agentInsertColumns + `)
SELECT $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, used.id, $17, $18, $19, $20, $21 FROM used
RETURNING ` + agentColumns

// consumeAndInsert spends one use of a's join token and inserts a in one
// statement (one round trip, committed on its own), and returns the agent
// as stored (times in UTC, monotonic readings dropped), exactly what
// GetAgent will return. The token's use is taken by an UPDATE whose WHERE
// re-checks max_uses, revocation and expiry at now, so racing
// registrations never over-use a token; an existing ID (or registration
// key) returns ErrConflict and takes no use.
func consumeAndInsert(ctx context.Context, q querier, a store.Agent, now time.Time) (store.Agent, error) {
	stored, err := scanAgent(q.QueryRow(ctx, consumeAndInsertAgent, a.JoinTokenID, timeArg(now),
		a.ID, a.Hostname, labelsArg(a.Labels), labelsArg(a.PinnedLabels), a.Version, a.State, a.StateReason,
		timeArg(a.StateChangedAt), timeArg(a.RegisteredAt), timeArg(a.ConnectedAt), timeArg(a.LastSeenAt), a.PeerAddress,
		a.CertSerial, timeArg(a.CertNotAfter), a.Hello, a.LastHeartbeat,
		timeArg(a.DeregisteredAt), a.DeregisterReason, a.PublicKeySHA256))
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return store.Agent{}, errJoinTokenInvalid
	case isConflict(err):
		return store.Agent{}, fmt.Errorf("store: insert agent %q: %w", a.ID, store.ErrConflict)
	case err != nil:
		return store.Agent{}, wrap(err, "register agent %q", a.ID)
	}
	return stored, nil
}

// GetAgent returns the agent with the given ID or ErrNotFound.
func (s *Store) GetAgent(ctx context.Context, id string) (store.Agent, error) {
	a, err := agentByID(ctx, s.pool, id)
	return found(a, err, "get agent", id)
}

// ListAgents returns every agent, deregistered ones included, ordered by ID.
func (s *Store) ListAgents(ctx context.Context) ([]store.Agent, error) {
	return queryAll(ctx, s.pool, "list agents", scanAgent, `SELECT `+agentColumns+` FROM agents ORDER BY id`)
}

// agentByID returns the agent with the given ID or pgx.ErrNoRows.
func agentByID(ctx context.Context, q querier, id string) (store.Agent, error) {
	return scanAgent(q.QueryRow(ctx, `SELECT `+agentColumns+` FROM agents WHERE id = $1`, id))
}

func scanAgent(row pgx.Row) (store.Agent, error) {
	var a store.Agent
	err := row.Scan(&a.ID, &a.Hostname, labelsCol{&a.Labels}, labelsCol{&a.PinnedLabels}, &a.Version, &a.State, &a.StateReason,
		timeCol{&a.StateChangedAt}, timeCol{&a.RegisteredAt}, timeCol{&a.ConnectedAt}, timeCol{&a.LastSeenAt}, &a.PeerAddress,
		&a.CertSerial, timeCol{&a.CertNotAfter}, &a.JoinTokenID, &a.Hello, &a.LastHeartbeat,
		timeCol{&a.DeregisteredAt}, &a.DeregisterReason, &a.PublicKeySHA256, &a.StreamHolder, &a.StatusSeq)
	return a, err
}

// updateAgentStatuses writes a set of AgentStatus rows (one per agent) in
// one statement: the arrays are unnested into rows joined to agents by ID.
// COALESCE keeps the stored value where the update passes NULL, which is
// how nil maps and slices mean "unchanged".
const updateAgentStatuses = `UPDATE agents AS a SET
	state = u.state, state_reason = u.state_reason, state_changed_at = u.state_changed_at,
	connected_at = u.connected_at, last_seen_at = u.last_seen_at,
	peer_address = u.peer_address, version = u.version, hostname = u.hostname,
	labels = COALESCE(u.labels, a.labels),
	hello = COALESCE(u.hello, a.hello),
	last_heartbeat = COALESCE(u.last_heartbeat, a.last_heartbeat),
	stream_holder = u.stream_holder, status_seq = nextval('agents_status_seq')
FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[], $5::int8[], $6::int8[], $7::text[], $8::text[], $9::text[],
	$10::text[], $11::bytea[], $12::bytea[], $13::text[], $14::text[])
	AS u(id, state, state_reason, state_changed_at, connected_at, last_seen_at, peer_address, version, hostname,
	labels, hello, last_heartbeat, stream_holder, if_holder)
WHERE a.id = u.id AND (u.if_holder = '' OR a.stream_holder = u.if_holder)`

// UpdateAgentStatuses writes updates in one transaction and one statement,
// however many agents it covers, as if applied in order. Unknown IDs are
// skipped.
//
// When some are Attach updates writing the agent connected, their rows are
// locked first, in ID order, and the state each replaces is read under the
// lock, in the same transaction: an agent marked lost by the fleet leader
// just before is seen lost here, and one marked lost just after had its
// mark refused (its status_seq moved), so its return is told once.
func (s *Store) UpdateAgentStatuses(ctx context.Context, updates []store.AgentStatus) ([]string, error) {
	if len(updates) == 0 {
		return nil, nil
	}
	merged := mergeAgentStatuses(updates)
	cols, err := agentStatusColumns(merged)
	if err != nil {
		return nil, fmt.Errorf("store: update agent statuses: %w", err)
	}
	var attached []string
	for _, u := range merged {
		if u.Attach && u.State == store.AgentConnected && u.IfHolder == "" {
			attached = append(attached, u.ID)
		}
	}
	if len(attached) == 0 {
		if _, err := s.pool.Exec(ctx, updateAgentStatuses, cols...); err != nil {
			return nil, wrap(err, "update agent statuses")
		}
		return nil, nil
	}
	var back []string
	err = s.inTx(ctx, "update agent statuses", func(tx pgx.Tx) error {
		lost, err := queryAll(ctx, tx, "read returning agents", func(row pgx.Row) (string, error) {
			var id string
			return id, row.Scan(&id)
		}, `SELECT id FROM (SELECT id, state FROM agents WHERE id = ANY($1) ORDER BY id FOR UPDATE) AS locked WHERE state = $2`,
			attached, store.AgentLost)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, updateAgentStatuses, cols...); err != nil {
			return wrap(err, "update agent statuses")
		}
		back = lost // unconditional updates of locked rows: all written
		return nil
	})
	if err != nil {
		return nil, err
	}
	return back, nil
}

// mergeAgentStatuses folds updates of the same agent into one, as applying
// them in order would leave the row: the later update's fields, and the
// last non-nil map or slice. It keeps the order of first appearance.
func mergeAgentStatuses(updates []store.AgentStatus) []store.AgentStatus {
	index := make(map[string]int, len(updates))
	out := make([]store.AgentStatus, 0, len(updates))
	for _, u := range updates {
		i, seen := index[u.ID]
		if !seen {
			index[u.ID] = len(out)
			out = append(out, u)
			continue
		}
		prev := out[i]
		if u.Labels == nil {
			u.Labels = prev.Labels
		}
		if u.Hello == nil {
			u.Hello = prev.Hello
		}
		if u.LastHeartbeat == nil {
			u.LastHeartbeat = prev.LastHeartbeat
		}
		u.Attach = u.Attach || prev.Attach
		// An unconditional write followed by one conditional on the
		// holder it wrote: applied in order, both apply.
		if prev.IfHolder == "" && u.IfHolder == prev.StreamHolder {
			u.IfHolder = ""
		}
		out[i] = u
	}
	return out
}

// agentStatusColumns returns the fourteen array arguments of
// updateAgentStatuses.
func agentStatusColumns(updates []store.AgentStatus) ([]any, error) {
	n := len(updates)
	var (
		ids, states, reasons, peers, versions, hostnames = make([]string, n), make([]string, n), make([]string, n),
			make([]string, n), make([]string, n), make([]string, n)
		changed, connected, seen = make([]*int64, n), make([]*int64, n), make([]*int64, n)
		labels                   = make([]*string, n)
		hellos, beats            = make([][]byte, n), make([][]byte, n)
		holders, ifHolders       = make([]string, n), make([]string, n)
	)
	for i, u := range updates {
		ids[i], states[i], reasons[i], peers[i], versions[i], hostnames[i] = u.ID, u.State, u.StateReason, u.PeerAddress, u.Version, u.Hostname
		var err error
		if changed[i], err = nanos(u.StateChangedAt); err != nil {
			return nil, fmt.Errorf("agent %q: state changed at: %w", u.ID, err)
		}
		if connected[i], err = nanos(u.ConnectedAt); err != nil {
			return nil, fmt.Errorf("agent %q: connected at: %w", u.ID, err)
		}
		if seen[i], err = nanos(u.LastSeenAt); err != nil {
			return nil, fmt.Errorf("agent %q: last seen at: %w", u.ID, err)
		}
		l, err := labelsArg(u.Labels).TextValue()
		if err != nil {
			return nil, fmt.Errorf("agent %q: %w", u.ID, err)
		}
		if l.Valid {
			labels[i] = &l.String
		}
		hellos[i], beats[i] = u.Hello, u.LastHeartbeat
		holders[i], ifHolders[i] = u.StreamHolder, u.IfHolder
	}
	return []any{ids, states, reasons, changed, connected, seen, peers, versions, hostnames, labels, hellos, beats,
		holders, ifHolders}, nil
}

// nanos encodes a time column value for an int8 array: nil for the zero
// time.
func nanos(t time.Time) (*int64, error) {
	v, err := timeArg(t).Int64Value()
	if err != nil || !v.Valid {
		return nil, err
	}
	return &v.Int64, nil
}

// runBatch sends b on tx and reads every result in order. onErr turns the
// error of query i into the error returned; check, when set, sees each
// query's rows affected and may refuse it.
func runBatch(ctx context.Context, tx pgx.Tx, b *pgx.Batch, onErr func(i int, err error) error, check func(i int, rows int64) error) error {
	results := tx.SendBatch(ctx, b)
	for i := range b.Len() {
		tag, err := results.Exec()
		if err != nil {
			_ = results.Close()
			return onErr(i, err)
		}
		if check != nil {
			if err := check(i, tag.RowsAffected()); err != nil {
				_ = results.Close()
				return err
			}
		}
	}
	if err := results.Close(); err != nil {
		return onErr(b.Len()-1, err)
	}
	return nil
}

// queryAll runs a query and scans every row with scan.
func queryAll[T any](ctx context.Context, q querier, op string, scan func(pgx.Row) (T, error), sql string, args ...any) ([]T, error) {
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return nil, wrap(err, "%s", op)
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, wrap(err, "%s", op)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, wrap(err, "%s", op)
	}
	return out, nil
}
