package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"flotilla.dev/controlplane/internal/store"
)

// now is the database's clock: SQLite runs in this process, so its clock
// is the process's.
var now = time.Now

// AcquireLease takes the lease name for holder (see store.LeaseStore).
func (s *Store) AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (store.Lease, error) {
	if err := store.ValidateLeaseRequest(name, holder, ttl); err != nil {
		return store.Lease{}, fmt.Errorf("store: acquire lease: %w", err)
	}
	var out store.Lease
	err := s.inWriteTx(ctx, "acquire lease", func(tx *sql.Tx) error {
		t := now()
		cur, err := leaseByName(ctx, tx, name)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			out = store.Lease{Name: name, Holder: holder, Token: 1}
		case err != nil:
			return fmt.Errorf("store: acquire lease %q: %w", name, err)
		case cur.Holder == holder:
			out = cur
		case cur.ExpiresAt.After(t):
			return fmt.Errorf("store: acquire lease: %w", &store.LeaseHeldError{Lease: cur})
		default:
			out = store.Lease{Name: name, Holder: holder, Token: cur.Token + 1}
		}
		out.ExpiresAt = t.Add(ttl).Round(0).UTC()
		_, err = tx.ExecContext(ctx, `INSERT INTO leases (name, holder, token, expires_at) VALUES (?, ?, ?, ?)
			ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, token = excluded.token, expires_at = excluded.expires_at`,
			name, holder, out.Token, timeArg(out.ExpiresAt))
		if err != nil {
			return fmt.Errorf("store: acquire lease %q: %w", name, err)
		}
		return nil
	})
	return out, err
}

// RenewLease extends holder's lease (see store.LeaseStore).
func (s *Store) RenewLease(ctx context.Context, name, holder string, token int64, ttl time.Duration) (store.Lease, error) {
	if err := store.ValidateLeaseRequest(name, holder, ttl); err != nil {
		return store.Lease{}, fmt.Errorf("store: renew lease: %w", err)
	}
	var out store.Lease
	err := s.inWriteTx(ctx, "renew lease", func(tx *sql.Tx) error {
		cur, err := leaseByName(ctx, tx, name)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("store: renew lease %q: never acquired: %w", name, store.ErrLeaseHeld)
		case err != nil:
			return fmt.Errorf("store: renew lease %q: %w", name, err)
		case cur.Holder != holder || cur.Token != token:
			return fmt.Errorf("store: renew lease: %w", &store.LeaseHeldError{Lease: cur})
		}
		out = cur
		out.ExpiresAt = now().Add(ttl).Round(0).UTC()
		if _, err := tx.ExecContext(ctx, `UPDATE leases SET expires_at = ? WHERE name = ?`, timeArg(out.ExpiresAt), name); err != nil {
			return fmt.Errorf("store: renew lease %q: %w", name, err)
		}
		return nil
	})
	return out, err
}

// ReleaseLease ends holder's lease at once (see store.LeaseStore). The row
// stays, so that the next holder's token follows this one.
func (s *Store) ReleaseLease(ctx context.Context, name, holder string, token int64) error {
	t := now()
	_, err := s.write.ExecContext(ctx, `UPDATE leases SET expires_at = ? WHERE name = ? AND holder = ? AND token = ? AND expires_at > ?`,
		timeArg(t), name, holder, token, timeArg(t))
	if err != nil {
		return fmt.Errorf("store: release lease %q: %w", name, err)
	}
	return nil
}

func leaseByName(ctx context.Context, q rowQuerier, name string) (store.Lease, error) {
	var l store.Lease
	err := q.QueryRowContext(ctx, `SELECT name, holder, token, expires_at FROM leases WHERE name = ?`, name).
		Scan(&l.Name, &l.Holder, &l.Token, timeCol{&l.ExpiresAt})
	return l, err
}
