package postgres

import (
	"context"
	"errors"
	"fmt"

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
		return fmt.Errorf("store: lease %q (holder %s, token %d): %w", f.Name, f.Holder, f.Token, store.ErrFenced)
	case err != nil:
		return wrap(err, "check lease %q", f.Name)
	}
	return nil
}
