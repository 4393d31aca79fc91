package postgres

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"

	"flotilla.dev/controlplane/internal/store"
)

// checkFence returns store.ErrFenced unless f's lease is still held by its
// holder with its token and has not expired by the database's clock; a nil
// f passes. It runs first in a write's transaction: FOR SHARE keeps the
// lease row from moving to another holder (an acquisition updates it) until
// the write commits, so a write and a takeover never interleave.
func checkFence(ctx context.Context, tx pgx.Tx, f *store.Fence) error {
	if f == nil {
		return nil
	}
	var one int
	err := tx.QueryRow(ctx, `SELECT 1 FROM leases WHERE name = $1 AND holder = $2 AND token = $3 AND expires_at > now() FOR SHARE`,
		f.Name, f.Holder, f.Token).Scan(&one)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return &store.FencedError{Fence: *f}
	case err != nil:
		return wrap(err, "check lease %q", f.Name)
	}
	return nil
}

// checkFences checks each of fences in turn (see checkFence), in the order
// given (store.DistinctFences sorts them, so that writers lock the lease
// rows in one order), and returns the first refusal.
func checkFences(ctx context.Context, tx pgx.Tx, fences []*store.Fence) error {
	for _, f := range fences {
		if err := checkFence(ctx, tx, f); err != nil {
			return err
		}
	}
	return nil
}
