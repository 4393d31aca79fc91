package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"flotilla.dev/controlplane/internal/store"
)

// errJoinTokenInvalid is the one answer for every token that cannot admit an
// agent; it never says why.
var errJoinTokenInvalid = fmt.Errorf("store: register agent: %w", store.ErrJoinTokenInvalid)

// agentColumns are the columns every read selects (scanAgent's order);
// agentInsertColumns those insertAgent writes, before status_seq.
const (
	agentColumns       = store.AgentColumns + ", " + store.AgentViewColumns
	agentInsertColumns = store.AgentColumns
)

// nextStatusSeq is the status_seq of a row written now: one above the
// largest stored (an index lookup). Run inside the writing statement under
// SQLite's single writer, it is never handed out twice; rows are never
// deleted, so it never goes back.
const nextStatusSeq = `(SELECT COALESCE(MAX(status_seq), 0) + 1 FROM agents)`

// RegisterAgent consumes one use of the join token whose hash is tokenHash
// and inserts the agent build returns, in one transaction (see store.Store).
// The stored agent's JoinTokenID is always the consumed token's ID, whatever
// build set, and the agent returned is the agent as stored. build runs while
// the store's single writer connection is held: it must be quick and must not
// call the store's write methods, which would wait for that connection until
// ctx ends.
func (s *Store) RegisterAgent(ctx context.Context, tokenHash []byte, now time.Time,
	build func(store.JoinToken) (store.Agent, error)) (store.Agent, error) {
	var agent store.Agent
	err := s.inWriteTx(ctx, "register agent", func(tx *sql.Tx) error {
		tok, err := usableJoinToken(ctx, tx, tokenHash, now)
		if err != nil {
			return err
		}
		a, err := build(tok)
		if err != nil {
			return err // the caller's error, as it returned it
		}
		a.JoinTokenID = tok.ID
		ok, err := consumeJoinTokenUse(ctx, tx, tok.ID)
		if err != nil {
			return fmt.Errorf("store: register agent: consume join token: %w", err)
		}
		if !ok {
			return errJoinTokenInvalid
		}
		if err := insertAgent(ctx, tx, a); err != nil {
			return err
		}
		// Read back so that the caller gets exactly what GetAgent will
		// return (times in UTC, monotonic readings dropped).
		if agent, err = agentByID(ctx, tx, a.ID); err != nil {
			return fmt.Errorf("store: register agent: read back %q: %w", a.ID, err)
		}
		return nil
	})
	if err != nil {
		return store.Agent{}, err
	}
	return agent, nil
}

// RegisteredWithKey returns the registered (not deregistered) agent that
// used the join token whose hash is tokenHash with the public key whose
// SHA-256 is keySHA256 (see store.Store). The token must still be valid
// (not expired, not revoked) but may be used up: the agent's own
// registration may have taken its last use.
func (s *Store) RegisteredWithKey(ctx context.Context, tokenHash []byte, keySHA256 string, now time.Time) (store.Agent, error) {
	if keySHA256 == "" {
		return store.Agent{}, store.ErrNotFound
	}
	tok, err := joinTokenByHash(ctx, s.read, tokenHash)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return store.Agent{}, errJoinTokenInvalid
	case err != nil:
		return store.Agent{}, fmt.Errorf("store: look up join token: %w", err)
	case !tok.Live(now):
		return store.Agent{}, errJoinTokenInvalid
	}
	a, err := scanAgent(s.read.QueryRowContext(ctx, `SELECT `+agentColumns+` FROM agents
		WHERE join_token_id = ? AND public_key_sha256 = ? AND deregistered_at IS NULL`, tok.ID, keySHA256))
	if errors.Is(err, sql.ErrNoRows) {
		return store.Agent{}, store.ErrNotFound
	}
	if err != nil {
		return store.Agent{}, fmt.Errorf("store: look up agent by registration key: %w", err)
	}
	return a, nil
}

// usableJoinToken returns the token whose hash is tokenHash if it can admit
// one more agent at now. Unknown, expired, revoked and used-up tokens all
// give the same ErrJoinTokenInvalid, so callers cannot tell them apart.
func usableJoinToken(ctx context.Context, tx *sql.Tx, tokenHash []byte, now time.Time) (store.JoinToken, error) {
	tok, err := joinTokenByHash(ctx, tx, tokenHash)
	if errors.Is(err, sql.ErrNoRows) {
		return store.JoinToken{}, errJoinTokenInvalid
	}
	if err != nil {
		return store.JoinToken{}, fmt.Errorf("store: register agent: look up join token: %w", err)
	}
	if !tok.Admits(now) {
		return store.JoinToken{}, errJoinTokenInvalid
	}
	return tok, nil
}

// insertAgent inserts a; an existing ID returns ErrConflict.
func insertAgent(ctx context.Context, tx *sql.Tx, a store.Agent) error {
	_, err := tx.ExecContext(ctx,
		`INSERT INTO agents (`+agentInsertColumns+`, status_seq)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, `+nextStatusSeq+`)`,
		a.ID, a.Hostname, labelsArg(a.Labels), labelsArg(a.PinnedLabels), a.Version, a.State, a.StateReason,
		timeArg(a.StateChangedAt), timeArg(a.RegisteredAt), timeArg(a.ConnectedAt), timeArg(a.LastSeenAt), a.PeerAddress,
		a.CertSerial, timeArg(a.CertNotAfter), a.JoinTokenID, blobArg(a.Hello), blobArg(a.LastHeartbeat),
		timeArg(a.DeregisteredAt), a.DeregisterReason, a.PublicKeySHA256)
	if isConflict(err) {
		return fmt.Errorf("store: insert agent %q: %w", a.ID, store.ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("store: insert agent %q: %w", a.ID, err)
	}
	return nil
}

// GetAgent returns the agent with the given ID or ErrNotFound.
func (s *Store) GetAgent(ctx context.Context, id string) (store.Agent, error) {
	a, err := agentByID(ctx, s.read, id)
	return found(a, err, "get agent", id)
}

// ListAgents returns every agent, deregistered ones included, ordered by ID.
func (s *Store) ListAgents(ctx context.Context) ([]store.Agent, error) {
	return queryAll(ctx, s.read, "list agents", scanAgent, `SELECT `+agentColumns+` FROM agents ORDER BY id`)
}

// agentByID returns the agent with the given ID or sql.ErrNoRows.
func agentByID(ctx context.Context, q rowQuerier, id string) (store.Agent, error) {
	return scanAgent(q.QueryRowContext(ctx, `SELECT `+agentColumns+` FROM agents WHERE id = ?`, id))
}

func scanAgent(row rowScanner) (store.Agent, error) {
	var a store.Agent
	err := row.Scan(&a.ID, &a.Hostname, labelsCol{&a.Labels}, labelsCol{&a.PinnedLabels}, &a.Version, &a.State, &a.StateReason,
		timeCol{&a.StateChangedAt}, timeCol{&a.RegisteredAt}, timeCol{&a.ConnectedAt}, timeCol{&a.LastSeenAt}, &a.PeerAddress,
		&a.CertSerial, timeCol{&a.CertNotAfter}, &a.JoinTokenID, blobCol{&a.Hello}, blobCol{&a.LastHeartbeat},
		timeCol{&a.DeregisteredAt}, &a.DeregisterReason, &a.PublicKeySHA256, &a.StreamHolder, &a.StatusSeq)
	return a, err
}

// updateAgentStatus writes one AgentStatus. COALESCE keeps the stored value
// where the update passes NULL, which is how nil maps and slices mean
// "unchanged".
const updateAgentStatus = `UPDATE agents SET
	state = ?, state_reason = ?, state_changed_at = ?, connected_at = ?, last_seen_at = ?,
	peer_address = ?, version = ?, hostname = ?,
	labels = COALESCE(?, labels),
	hello = COALESCE(?, hello),
	last_heartbeat = COALESCE(?, last_heartbeat),
	stream_holder = ?, status_seq = ` + nextStatusSeq + `
WHERE id = ? AND (? = '' OR stream_holder = ?)`

// UpdateAgentStatuses writes updates in one transaction, which costs one
// fsync however many agents it covers. Unknown IDs are skipped. An Attach
// update reads the state it replaces first (the write transaction holds
// the database).
func (s *Store) UpdateAgentStatuses(ctx context.Context, updates []store.AgentStatus) ([]string, error) {
	if len(updates) == 0 {
		return nil, nil
	}
	var back []string
	err := s.inWriteTx(ctx, "update agent statuses", func(tx *sql.Tx) error {
		back = back[:0]
		stmt, err := tx.PrepareContext(ctx, updateAgentStatus)
		if err != nil {
			return fmt.Errorf("store: update agent statuses: %w", err)
		}
		defer stmt.Close()
		for _, u := range updates {
			from := ""
			if u.Attach && u.State == store.AgentConnected {
				err := tx.QueryRowContext(ctx, `SELECT state FROM agents WHERE id = ?`, u.ID).Scan(&from)
				if err != nil && !errors.Is(err, sql.ErrNoRows) {
					return fmt.Errorf("store: read agent status %q: %w", u.ID, err)
				}
			}
			res, err := stmt.ExecContext(ctx,
				u.State, u.StateReason, timeArg(u.StateChangedAt), timeArg(u.ConnectedAt), timeArg(u.LastSeenAt),
				u.PeerAddress, u.Version, u.Hostname,
				labelsArg(u.Labels), blobArg(u.Hello), blobArg(u.LastHeartbeat),
				u.StreamHolder, u.ID, u.IfHolder, u.IfHolder)
			if err != nil {
				return fmt.Errorf("store: update agent status %q: %w", u.ID, err)
			}
			if n, _ := res.RowsAffected(); n > 0 && from == store.AgentLost {
				back = append(back, u.ID)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return back, nil
}
