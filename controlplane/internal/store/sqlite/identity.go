package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"flotilla.dev/controlplane/internal/store"
)

// ListJoinTokens returns every join token, newest first.
func (s *Store) ListJoinTokens(ctx context.Context) ([]store.JoinToken, error) {
	return queryAll(ctx, s.read, "list join tokens", scanJoinToken, `SELECT `+joinTokenColumns+` FROM join_tokens ORDER BY created_at DESC, id`)
}

// RevokeJoinToken marks the join token revoked (see store.IdentityStore).
func (s *Store) RevokeJoinToken(ctx context.Context, id string, at time.Time) (store.JoinToken, error) {
	var tok store.JoinToken
	err := s.inWriteTx(ctx, "revoke join token", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE join_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL`, timeArg(at), id)
		if err != nil {
			return fmt.Errorf("store: revoke join token %q: %w", id, err)
		}
		if _, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("store: revoke join token %q: %w", id, err)
		}
		tok, err = scanJoinToken(tx.QueryRowContext(ctx, `SELECT `+joinTokenColumns+` FROM join_tokens WHERE id = ?`, id))
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("store: revoke join token %q: %w", id, store.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("store: revoke join token %q: %w", id, err)
		}
		return nil
	})
	return tok, err
}

// ListAPITokens returns every operator token, newest first.
func (s *Store) ListAPITokens(ctx context.Context) ([]store.APIToken, error) {
	return queryAll(ctx, s.read, "list api tokens", scanAPIToken, `SELECT `+apiTokenColumns+` FROM api_tokens ORDER BY created_at DESC, id`)
}

// GetAPIToken returns the operator token with the given ID or ErrNotFound.
func (s *Store) GetAPIToken(ctx context.Context, id string) (store.APIToken, error) {
	t, err := scanAPIToken(s.read.QueryRowContext(ctx, `SELECT `+apiTokenColumns+` FROM api_tokens WHERE id = ?`, id))
	return found(t, err, "get api token", id)
}

// RevokeAPIToken marks the operator token revoked (see store.IdentityStore).
func (s *Store) RevokeAPIToken(ctx context.Context, id string, at time.Time) (store.APIToken, error) {
	var tok store.APIToken
	err := s.inWriteTx(ctx, "revoke api token", func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL`, timeArg(at), id); err != nil {
			return fmt.Errorf("store: revoke api token %q: %w", id, err)
		}
		var err error
		tok, err = scanAPIToken(tx.QueryRowContext(ctx, `SELECT `+apiTokenColumns+` FROM api_tokens WHERE id = ?`, id))
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("store: revoke api token %q: %w", id, store.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("store: revoke api token %q: %w", id, err)
		}
		return nil
	})
	return tok, err
}

// DeregisterAgent marks the agent deregistered (see store.IdentityStore).
func (s *Store) DeregisterAgent(ctx context.Context, id string, at time.Time, reason string) (store.Agent, error) {
	var agent store.Agent
	err := s.inWriteTx(ctx, "deregister agent", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE agents SET deregistered_at = ?, deregister_reason = ?, status_seq = `+nextStatusSeq+` WHERE id = ? AND deregistered_at IS NULL`,
			timeArg(at), reason, id)
		if err != nil {
			return fmt.Errorf("store: deregister agent %q: %w", id, err)
		}
		agent, err = agentByID(ctx, tx, id)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("store: deregister agent %q: %w", id, store.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("store: deregister agent %q: %w", id, err)
		}
		return nil
	})
	return agent, err
}

// UpdateAgentCertificate records a renewed certificate (see store.IdentityStore).
func (s *Store) UpdateAgentCertificate(ctx context.Context, id, serial string, notAfter time.Time) error {
	res, err := s.write.ExecContext(ctx, `UPDATE agents SET cert_serial = ?, cert_not_after = ?, status_seq = `+nextStatusSeq+` WHERE id = ? AND deregistered_at IS NULL`,
		serial, timeArg(notAfter), id)
	if err != nil {
		return fmt.Errorf("store: update agent certificate %q: %w", id, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("store: update agent certificate %q: %w", id, err)
	}
	if n == 0 {
		return fmt.Errorf("store: update agent certificate %q: no registered agent: %w", id, store.ErrNotFound)
	}
	return nil
}
