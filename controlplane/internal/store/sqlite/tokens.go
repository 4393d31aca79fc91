package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"flotilla.dev/controlplane/internal/store"
)

const joinTokenColumns = store.JoinTokenColumns

// CreateJoinToken inserts t; an existing ID or hash returns ErrConflict.
func (s *Store) CreateJoinToken(ctx context.Context, t store.JoinToken) error {
	_, err := s.write.ExecContext(ctx,
		`INSERT INTO join_tokens (`+joinTokenColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		t.ID, blobArg(t.Hash), t.Description, labelsArg(t.Labels), t.MaxUses, t.Uses,
		timeArg(t.CreatedAt), timeArg(t.ExpiresAt), timeArg(t.RevokedAt))
	if isConflict(err) {
		return fmt.Errorf("store: create join token %q: %w", t.ID, store.ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("store: create join token %q: %w", t.ID, err)
	}
	return nil
}

// GetJoinToken returns the join token with the given ID or ErrNotFound.
func (s *Store) GetJoinToken(ctx context.Context, id string) (store.JoinToken, error) {
	row := s.read.QueryRowContext(ctx, `SELECT `+joinTokenColumns+` FROM join_tokens WHERE id = ?`, id)
	t, err := scanJoinToken(row)
	return found(t, err, "get join token", id)
}

// joinTokenByHash returns the join token whose secret hashes to hash, or
// sql.ErrNoRows. Its errors do not name the token: the caller must not reveal
// whether it exists.
func joinTokenByHash(ctx context.Context, q rowQuerier, hash []byte) (store.JoinToken, error) {
	row := q.QueryRowContext(ctx, `SELECT `+joinTokenColumns+` FROM join_tokens WHERE hash = ?`, blobArg(hash))
	return scanJoinToken(row)
}

// consumeJoinTokenUse spends one use of the token. The guard in the WHERE
// clause re-checks max_uses in the same statement, so the token can never be
// over-used even by an implementation with weaker transaction isolation.
// It reports whether a use was left to spend.
func consumeJoinTokenUse(ctx context.Context, tx *sql.Tx, id string) (bool, error) {
	res, err := tx.ExecContext(ctx, `UPDATE join_tokens SET uses = uses + 1 WHERE id = ? AND uses < max_uses`, id)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, err
	}
	return n == 1, nil
}

func scanJoinToken(row rowScanner) (store.JoinToken, error) {
	var t store.JoinToken
	err := row.Scan(&t.ID, blobCol{&t.Hash}, &t.Description, labelsCol{&t.Labels}, &t.MaxUses, &t.Uses,
		timeCol{&t.CreatedAt}, timeCol{&t.ExpiresAt}, timeCol{&t.RevokedAt})
	return t, err
}

const apiTokenColumns = store.APITokenColumns

// CreateAPIToken inserts t; an existing ID or hash returns ErrConflict.
func (s *Store) CreateAPIToken(ctx context.Context, t store.APIToken) error {
	_, err := s.write.ExecContext(ctx,
		`INSERT INTO api_tokens (`+apiTokenColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		t.ID, t.Name, blobArg(t.Hash), t.Role,
		timeArg(t.CreatedAt), timeArg(t.ExpiresAt), timeArg(t.RevokedAt), t.CreatedBy)
	if isConflict(err) {
		return fmt.Errorf("store: create api token %q: %w", t.ID, store.ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("store: create api token %q: %w", t.ID, err)
	}
	return nil
}

// GetAPITokenByHash returns the API token whose secret hashes to hash, or
// ErrNotFound. Errors never include the hash: it identifies a credential.
func (s *Store) GetAPITokenByHash(ctx context.Context, hash []byte) (store.APIToken, error) {
	row := s.read.QueryRowContext(ctx, `SELECT `+apiTokenColumns+` FROM api_tokens WHERE hash = ?`, blobArg(hash))
	t, err := scanAPIToken(row)
	if errors.Is(err, sql.ErrNoRows) {
		return store.APIToken{}, fmt.Errorf("store: get api token by hash: %w", store.ErrNotFound)
	}
	if err != nil {
		return store.APIToken{}, fmt.Errorf("store: get api token by hash: %w", err)
	}
	return t, nil
}

func scanAPIToken(row rowScanner) (store.APIToken, error) {
	var t store.APIToken
	err := row.Scan(&t.ID, &t.Name, blobCol{&t.Hash}, &t.Role,
		timeCol{&t.CreatedAt}, timeCol{&t.ExpiresAt}, timeCol{&t.RevokedAt}, &t.CreatedBy)
	return t, err
}

// CountAPITokens returns the number of API tokens, revoked ones included.
func (s *Store) CountAPITokens(ctx context.Context) (int, error) {
	var n int
	if err := s.read.QueryRowContext(ctx, `SELECT COUNT(*) FROM api_tokens`).Scan(&n); err != nil {
		return 0, fmt.Errorf("store: count api tokens: %w", err)
	}
	return n, nil
}
