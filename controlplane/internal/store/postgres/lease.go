package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"flotilla.dev/controlplane/internal/store"
)

// Expiries are computed by the database from its own clock (now()), so that
// holders' clocks never matter; the TTL travels as microseconds, the
// resolution of timestamptz.

// acquireLease takes the lease when it is free, expired or already
// holder's, in one statement: the row lock taken by ON CONFLICT makes
// racing holders wait for each other and re-check the WHERE against the
// winner's row. The token moves only when the holder changes.
const acquireLease = `INSERT INTO leases (name, holder, token, expires_at)
VALUES ($1, $2, 1, now() + $3 * interval '1 microsecond')
ON CONFLICT (name) DO UPDATE SET
	holder = excluded.holder,
	token = CASE WHEN leases.holder = excluded.holder THEN leases.token ELSE leases.token + 1 END,
	expires_at = excluded.expires_at
WHERE leases.holder = excluded.holder OR leases.expires_at <= now()
RETURNING name, holder, token, expires_at`

// AcquireLease takes the lease name for holder (see store.LeaseStore).
func (s *Store) AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (store.Lease, error) {
	if err := store.ValidateLeaseRequest(name, holder, ttl); err != nil {
		return store.Lease{}, fmt.Errorf("store: acquire lease: %w", err)
	}
	l, err := scanLease(s.pool.QueryRow(ctx, acquireLease, name, holder, ttl.Microseconds()))
	if err == nil {
		return l, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return store.Lease{}, wrap(err, "acquire lease %q", name)
	}
	// Another holder's live lease: say whose.
	cur, err := scanLease(s.pool.QueryRow(ctx, `SELECT name, holder, token, expires_at FROM leases WHERE name = $1`, name))
	if err != nil {
		return store.Lease{}, wrap(err, "acquire lease %q: read holder", name)
	}
	return store.Lease{}, fmt.Errorf("store: acquire lease: %w", &store.LeaseHeldError{Lease: cur})
}

// RenewLease extends holder's lease (see store.LeaseStore).
func (s *Store) RenewLease(ctx context.Context, name, holder string, token int64, ttl time.Duration) (store.Lease, error) {
	if err := store.ValidateLeaseRequest(name, holder, ttl); err != nil {
		return store.Lease{}, fmt.Errorf("store: renew lease: %w", err)
	}
	l, err := scanLease(s.pool.QueryRow(ctx, `UPDATE leases SET expires_at = now() + $4 * interval '1 microsecond'
		WHERE name = $1 AND holder = $2 AND token = $3 RETURNING name, holder, token, expires_at`,
		name, holder, token, ttl.Microseconds()))
	if err == nil {
		return l, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return store.Lease{}, wrap(err, "renew lease %q", name)
	}
	cur, err := scanLease(s.pool.QueryRow(ctx, `SELECT name, holder, token, expires_at FROM leases WHERE name = $1`, name))
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Lease{}, fmt.Errorf("store: renew lease %q: never acquired: %w", name, store.ErrLeaseHeld)
	}
	if err != nil {
		return store.Lease{}, wrap(err, "renew lease %q: read holder", name)
	}
	return store.Lease{}, fmt.Errorf("store: renew lease: %w", &store.LeaseHeldError{Lease: cur})
}

// ReleaseLease ends holder's lease at once (see store.LeaseStore). The row
// stays, so that the next holder's token follows this one.
func (s *Store) ReleaseLease(ctx context.Context, name, holder string, token int64) error {
	_, err := s.pool.Exec(ctx, `UPDATE leases SET expires_at = now()
		WHERE name = $1 AND holder = $2 AND token = $3 AND expires_at > now()`, name, holder, token)
	if err != nil {
		return wrap(err, "release lease %q", name)
	}
	return nil
}

func scanLease(row pgx.Row) (store.Lease, error) {
	var l store.Lease
	err := row.Scan(&l.Name, &l.Holder, &l.Token, &l.ExpiresAt)
	l.ExpiresAt = l.ExpiresAt.UTC()
	return l, err
}
