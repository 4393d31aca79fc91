package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"flotilla.dev/controlplane/internal/store"
)

// checkFence returns store.ErrFenced unless f's lease is still held by its
// holder with its token and has not expired (by this process's clock, the
// database's); a nil f passes. It runs first in a write transaction, which
// SQLite serializes with every acquisition.
func checkFence(ctx context.Context, tx *sql.Tx, f *store.Fence) error {
	if f == nil {
		return nil
	}
	cur, err := leaseByName(ctx, tx, f.Name)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("store: lease %q (holder %s, token %d): never acquired: %w", f.Name, f.Holder, f.Token, store.ErrFenced)
	case err != nil:
		return fmt.Errorf("store: check lease %q: %w", f.Name, err)
	case cur.Holder != f.Holder || cur.Token != f.Token || !cur.ExpiresAt.After(now()):
		return fmt.Errorf("store: lease %q (holder %s, token %d): now holder %s, token %d, expires %s: %w", f.Name, f.Holder, f.Token,
			cur.Holder, cur.Token, cur.ExpiresAt.Format("2006-01-02T15:04:05.000Z07:00"), store.ErrFenced)
	}
	return nil
}
