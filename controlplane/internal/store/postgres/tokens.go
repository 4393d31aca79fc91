package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"flotilla.dev/controlplane/internal/store"
)

const joinTokenColumns = store.JoinTokenColumns

// CreateJoinToken inserts t; an existing ID or hash returns ErrConflict.
func (s *Store) CreateJoinToken(ctx context.Context, t store.JoinToken) error {
	_, err := s.pool.Exec(ctx,
		`INSERT INTO join_tokens (`+joinTokenColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		t.ID, t.Hash, t.Description, labelsArg(t.Labels), t.MaxUses, t.Uses,
		timeArg(t.CreatedAt), timeArg(t.ExpiresAt), timeArg(t.RevokedAt))
	if isConflict(err) {
		return fmt.Errorf("store: create join token %q: %w", t.ID, store.ErrConflict)
	}
	if err != nil {
		return wrap(err, "create join token %q", t.ID)
	}
	return nil
}

// GetJoinToken returns the join token with the given ID or ErrNotFound.
func (s *Store) GetJoinToken(ctx context.Context, id string) (store.JoinToken, error) {
	t, err := joinTokenByID(ctx, s.pool, id)
	return found(t, err, "get join token", id)
}

func joinTokenByID(ctx context.Context, q querier, id string) (store.JoinToken, error) {
	return scanJoinToken(q.QueryRow(ctx, `SELECT `+joinTokenColumns+` FROM join_tokens WHERE id = $1`, id))
}

// joinTokenByHash returns the join token whose secret hashes to hash, or
// pgx.ErrNoRows. Its errors do not name the token: the caller must not
// reveal whether it exists.
func joinTokenByHash(ctx context.Context, q querier, hash []byte) (store.JoinToken, error) {
	return scanJoinToken(q.QueryRow(ctx, `SELECT `+joinTokenColumns+` FROM join_tokens WHERE hash = $1`, hash))
}

func scanJoinToken(row pgx.Row) (store.JoinToken, error) {
	var t store.JoinToken
	err := row.Scan(&t.ID, &t.Hash, &t.Description, labelsCol{&t.Labels}, &t.MaxUses, &t.Uses,
		timeCol{&t.CreatedAt}, timeCol{&t.ExpiresAt}, timeCol{&t.RevokedAt})
	return t, err
}

const apiTokenColumns = store.APITokenColumns

// CreateAPIToken inserts t; an existing ID or hash returns ErrConflict.
func (s *Store) CreateAPIToken(ctx context.Context, t store.APIToken) error {
	_, err := s.pool.Exec(ctx,
		`INSERT INTO api_tokens (`+apiTokenColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		t.ID, t.Name, t.Hash, t.Role, timeArg(t.CreatedAt), timeArg(t.ExpiresAt), timeArg(t.RevokedAt), t.CreatedBy)
	if isConflict(err) {
		return fmt.Errorf("store: create api token %q: %w", t.ID, store.ErrConflict)
	}
	if err != nil {
		return wrap(err, "create api token %q", t.ID)
	}
	return nil
}

// GetAPITokenByHash returns the API token whose secret hashes to hash, or
// ErrNotFound. Errors never include the hash: it identifies a credential.
func (s *Store) GetAPITokenByHash(ctx context.Context, hash []byte) (store.APIToken, error) {
	t, err := scanAPIToken(s.pool.QueryRow(ctx, `SELECT `+apiTokenColumns+` FROM api_tokens WHERE hash = $1`, hash))
	if errors.Is(err, pgx.ErrNoRows) {
		return store.APIToken{}, fmt.Errorf("store: get api token by hash: %w", store.ErrNotFound)
	}
	if err != nil {
		return store.APIToken{}, wrap(err, "get api token by hash")
	}
	return t, nil
}

func scanAPIToken(row pgx.Row) (store.APIToken, error) {
	var t store.APIToken
	err := row.Scan(&t.ID, &t.Name, &t.Hash, &t.Role,
		timeCol{&t.CreatedAt}, timeCol{&t.ExpiresAt}, timeCol{&t.RevokedAt}, &t.CreatedBy)
	return t, err
}

// CountAPITokens returns the number of API tokens, revoked ones included.
func (s *Store) CountAPITokens(ctx context.Context) (int, error) {
	var n int
	if err := s.pool.QueryRow(ctx, `SELECT COUNT(*) FROM api_tokens`).Scan(&n); err != nil {
		return 0, wrap(err, "count api tokens")
	}
	return n, nil
}
