package auth

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"flotilla.dev/controlplane/internal/fsutil"
	"flotilla.dev/controlplane/internal/store"
)

// AdminTokenFile is where the first admin token is written, 0600.
const AdminTokenFile = "admin.token"

// EnsureAdminToken creates an admin API token when the store has none and
// writes its secret to dir/admin.token (0600). It returns the file's path
// when it created one, "" otherwise.
func EnsureAdminToken(ctx context.Context, st store.TokenStore, dir string, now time.Time) (string, error) {
	n, err := st.CountAPITokens(ctx)
	if err != nil {
		return "", fmt.Errorf("bootstrap admin token: %w", err)
	}
	if n > 0 {
		return "", nil
	}
	secret, hash, err := NewSecret(APITokenPrefix)
	if err != nil {
		return "", err
	}
	id, err := NewID("at-")
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, AdminTokenFile)
	// Write the file first: a token in the store whose secret nobody has
	// would lock the operator out.
	if err := fsutil.WriteFileAtomic(path, []byte(secret+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("bootstrap admin token: %w", err)
	}
	tok := store.APIToken{ID: id, Name: "bootstrap admin", Hash: hash, Role: RoleAdmin.String(), CreatedAt: now}
	if err := st.CreateAPIToken(ctx, tok); err != nil {
		return "", fmt.Errorf("bootstrap admin token: %w", err)
	}
	return path, nil
}
