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
		return &store.FencedError{Fence: *f, Detail: "never acquired"}
	case err != nil:
		return fmt.Errorf("store: check lease %q: %w", f.Name, err)
	case cur.Holder != f.Holder || cur.Token != f.Token || !cur.ExpiresAt.After(now()):
		return &store.FencedError{Fence: *f, Detail: fmt.Sprintf("now holder %s, token %d, expires %s",
			cur.Holder, cur.Token, cur.ExpiresAt.Format("2006-01-02T15:04:05.000Z07:00"))}
	}
	return nil
}

// checkFences checks each of fences in turn (see checkFence) and returns
// the first refusal.
func checkFences(ctx context.Context, tx *sql.Tx, fences []*store.Fence) error {
	for _, f := range fences {
		if err := checkFence(ctx, tx, f); err != nil {
			return err
		}
	}
	return nil
}
