package auth

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
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

// BootstrapRecordFile, in the data directory, records which join token the
// control plane last wrote to its bootstrap join token file: the token's
// ID and the SHA-256 of its secret (0600).
const BootstrapRecordFile = "bootstrap-join-token.record"

// BootstrapJoinToken configures the join token the control plane keeps in a
// file for agents that share a volume with it.
type BootstrapJoinToken struct {
	// File receives the token's secret (0600); its directory is created
	// (0755) when missing.
	File string
	// TTL is a new token's lifetime; a token with less than half of it
	// left is replaced.
	TTL time.Duration
	// MaxUses is how many agents may register with a new token.
	MaxUses int
	// DataDir holds BootstrapRecordFile.
	DataDir string
}

// Bootstrap join token outcomes, as EnsureBootstrapJoinToken reports them.
const (
	// BootstrapCreated: a new token was stored and written to the file.
	BootstrapCreated = "created"
	// BootstrapKept: the file holds the usable token this control plane wrote.
	BootstrapKept = "kept"
	// BootstrapForeign: the file holds something this control plane did
	// not write (the operator's own token); it is left alone.
	BootstrapForeign = "foreign"
)

// EnsureBootstrapJoinToken makes cfg.File hold a usable join token: when
// the file is missing, or holds the token this control plane wrote last but
// that token is gone, revoked, used up or past half its life, a new token
// is stored, recorded in the data directory and written to the file. A file
// this control plane did not write is never replaced. It returns the
// outcome and the ID of the token the file holds ("" when foreign).
func EnsureBootstrapJoinToken(ctx context.Context, st store.TokenStore, cfg BootstrapJoinToken, now time.Time) (outcome, tokenID string, err error) {
	if cfg.TTL <= 0 || cfg.MaxUses < 1 {
		return "", "", fmt.Errorf("bootstrap join token: TTL %s and uses %d must be positive", cfg.TTL, cfg.MaxUses)
	}
	current, err := os.ReadFile(cfg.File)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return "", "", fmt.Errorf("bootstrap.join_token_file: %w", err)
	default:
		id, ours, err := recordedToken(cfg.DataDir, strings.TrimSpace(string(current)))
		if err != nil {
			return "", "", err
		}
		if !ours {
			return BootstrapForeign, "", nil
		}
		usable, err := usableJoinToken(ctx, st, id, cfg.TTL, now)
		if err != nil || usable {
			return BootstrapKept, id, err
		}
	}
	if tokenID, err = createBootstrapJoinToken(ctx, st, cfg, now); err != nil {
		return "", "", err
	}
	return BootstrapCreated, tokenID, nil
}

// recordedToken reports whether secret is the one the record names, and
// the ID of its token.
func recordedToken(dataDir, secret string) (id string, ours bool, err error) {
	rec, err := fsutil.ReadSecretFile(filepath.Join(dataDir, BootstrapRecordFile))
	if errors.Is(err, fs.ErrNotExist) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("bootstrap join token record: %w", err)
	}
	id, sum, ok := strings.Cut(strings.TrimSpace(string(rec)), " ")
	if !ok || id == "" {
		return "", false, fmt.Errorf("bootstrap join token record %s: want \"<token ID> <SHA-256 of the secret>\"; delete it and the join token file to start over",
			filepath.Join(dataDir, BootstrapRecordFile))
	}
	return id, sum == hex.EncodeToString(HashSecret(secret)), nil
}

// usableJoinToken reports whether the token id may still register an
// agent, with at least half of ttl left.
func usableJoinToken(ctx context.Context, st store.TokenStore, id string, ttl time.Duration, now time.Time) (bool, error) {
	tok, err := st.GetJoinToken(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("bootstrap join token: %w", err)
	}
	return tok.RevokedAt.IsZero() && tok.Uses < tok.MaxUses && tok.ExpiresAt.After(now.Add(ttl/2)), nil
}

// createBootstrapJoinToken stores a new token, records it, then writes its
// secret: a failure part way leaves no file naming a token the store lacks.
func createBootstrapJoinToken(ctx context.Context, st store.TokenStore, cfg BootstrapJoinToken, now time.Time) (string, error) {
	secret, hash, err := NewSecret(JoinTokenPrefix)
	if err != nil {
		return "", err
	}
	id, err := NewID("jt-")
	if err != nil {
		return "", err
	}
	tok := store.JoinToken{
		ID: id, Hash: hash, Description: "bootstrap: " + cfg.File,
		MaxUses: cfg.MaxUses, CreatedAt: now, ExpiresAt: now.Add(cfg.TTL),
	}
	if err := st.CreateJoinToken(ctx, tok); err != nil {
		return "", fmt.Errorf("bootstrap join token: %w", err)
	}
	record := id + " " + hex.EncodeToString(hash) + "\n"
	if err := fsutil.WriteFileAtomic(filepath.Join(cfg.DataDir, BootstrapRecordFile), []byte(record), 0o600); err != nil {
		return "", fmt.Errorf("bootstrap join token record: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(cfg.File), 0o755); err != nil {
		return "", fmt.Errorf("bootstrap.join_token_file: %w", err)
	}
	if err := fsutil.WriteFileAtomic(cfg.File, []byte(secret+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("bootstrap.join_token_file: %w", err)
	}
	return id, nil
}
