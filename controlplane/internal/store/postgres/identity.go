package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"flotilla.dev/controlplane/internal/store"
)

// ListJoinTokens returns every join token, newest first.
func (s *Store) ListJoinTokens(ctx context.Context) ([]store.JoinToken, error) {
	return queryAll(ctx, s.pool, "list join tokens", scanJoinToken,
		`SELECT `+joinTokenColumns+` FROM join_tokens ORDER BY created_at DESC, id`)
}

// RevokeJoinToken marks the join token revoked (see store.IdentityStore).
func (s *Store) RevokeJoinToken(ctx context.Context, id string, at time.Time) (store.JoinToken, error) {
	var tok store.JoinToken
	err := s.inTx(ctx, "revoke join token", func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE join_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL`, timeArg(at), id); err != nil {
			return wrap(err, "revoke join token %q", id)
		}
		var err error
		tok, err = joinTokenByID(ctx, tx, id)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("store: revoke join token %q: %w", id, store.ErrNotFound)
		}
		if err != nil {
			return wrap(err, "revoke join token %q", id)
		}
		return nil
	})
	return tok, err
}

// ListAPITokens returns every operator token, newest first.
func (s *Store) ListAPITokens(ctx context.Context) ([]store.APIToken, error) {
	return queryAll(ctx, s.pool, "list api tokens", scanAPIToken,
		`SELECT `+apiTokenColumns+` FROM api_tokens ORDER BY created_at DESC, id`)
}

// GetAPIToken returns the operator token with the given ID or ErrNotFound.
func (s *Store) GetAPIToken(ctx context.Context, id string) (store.APIToken, error) {
	t, err := apiTokenByID(ctx, s.pool, id)
	return found(t, err, "get api token", id)
}

func apiTokenByID(ctx context.Context, q querier, id string) (store.APIToken, error) {
	return scanAPIToken(q.QueryRow(ctx, `SELECT `+apiTokenColumns+` FROM api_tokens WHERE id = $1`, id))
}

// RevokeAPIToken marks the operator token revoked (see store.IdentityStore).
func (s *Store) RevokeAPIToken(ctx context.Context, id string, at time.Time) (store.APIToken, error) {
	var tok store.APIToken
	err := s.inTx(ctx, "revoke api token", func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL`, timeArg(at), id); err != nil {
			return wrap(err, "revoke api token %q", id)
		}
		var err error
		tok, err = apiTokenByID(ctx, tx, id)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("store: revoke api token %q: %w", id, store.ErrNotFound)
		}
		if err != nil {
			return wrap(err, "revoke api token %q", id)
		}
		return nil
	})
	return tok, err
}

// DeregisterAgent marks the agent deregistered (see store.IdentityStore).
func (s *Store) DeregisterAgent(ctx context.Context, id string, at time.Time, reason string) (store.Agent, error) {
	var agent store.Agent
	err := s.inTx(ctx, "deregister agent", func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `UPDATE agents SET deregistered_at = $1, deregister_reason = $2, status_seq = nextval('agents_status_seq') WHERE id = $3 AND deregistered_at IS NULL`,
			timeArg(at), reason, id)
		if err != nil {
			return wrap(err, "deregister agent %q", id)
		}
		agent, err = agentByID(ctx, tx, id)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("store: deregister agent %q: %w", id, store.ErrNotFound)
		}
		if err != nil {
			return wrap(err, "deregister agent %q", id)
		}
		return nil
	})
	return agent, err
}

// UpdateAgentCertificate records a renewed certificate (see store.IdentityStore).
func (s *Store) UpdateAgentCertificate(ctx context.Context, id, serial string, notAfter time.Time) error {
	tag, err := s.pool.Exec(ctx, `UPDATE agents SET cert_serial = $1, cert_not_after = $2, status_seq = nextval('agents_status_seq') WHERE id = $3 AND deregistered_at IS NULL`,
		serial, timeArg(notAfter), id)
	if err != nil {
		return wrap(err, "update agent certificate %q", id)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("store: update agent certificate %q: no registered agent: %w", id, store.ErrNotFound)
	}
	return nil
}
