package auth_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"flotilla.dev/controlplane/internal/auth"
	"flotilla.dev/controlplane/internal/store"
)

func TestEnsureAdminTokenCreatesOnce(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	dir := t.TempDir()

	path, err := auth.EnsureAdminToken(ctx, st, dir, t0)
	if err != nil {
		t.Fatalf("EnsureAdminToken: %v", err)
	}
	if want := filepath.Join(dir, auth.AdminTokenFile); path != want {
		t.Fatalf("path = %q, want %q", path, want)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := info.Mode().Perm(); perm != 0o600 {
		t.Errorf("%s has mode %04o, want 0600", path, perm)
	}
	content, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^fat_[a-z2-7]{52}\n$`).Match(content) {
		t.Fatalf("admin token file = %q, want fat_<52 base32 characters> and a newline", content)
	}
	secret := strings.TrimSuffix(string(content), "\n")

	tok, err := st.GetAPITokenByHash(ctx, auth.HashSecret(secret))
	if err != nil {
		t.Fatalf("the file's secret does not hash to a stored token: %v", err)
	}
	if tok.Role != "admin" || tok.Name != "bootstrap admin" || !tok.CreatedAt.Equal(t0) ||
		!tok.ExpiresAt.IsZero() || !tok.RevokedAt.IsZero() || !regexp.MustCompile(`^at-[a-z2-7]{8}$`).MatchString(tok.ID) {
		t.Errorf("stored token = %+v; want a never-expiring admin token at-<8> named bootstrap admin created at %s", tok, t0)
	}

	// The secret works as an admin credential.
	a := auth.NewAuthenticator(st, func() time.Time { return t0 })
	pctx, err := authenticate(a, callCtx(createJoinToken, []string{"Bearer " + secret}, nil))
	if err != nil {
		t.Fatalf("bootstrap token refused for CreateJoinToken: %v", err)
	}
	if p, _ := auth.PrincipalFrom(pctx); p != (auth.Principal{Kind: "operator", ID: tok.ID, Role: auth.RoleAdmin}) {
		t.Errorf("principal = %+v", p)
	}

	// Second start: nothing to do, and the file is left alone.
	path2, err := auth.EnsureAdminToken(ctx, st, dir, t0.Add(time.Hour))
	if err != nil || path2 != "" {
		t.Fatalf("second EnsureAdminToken = %q, %v; want \"\", nil", path2, err)
	}
	if n, err := st.CountAPITokens(ctx); err != nil || n != 1 {
		t.Errorf("CountAPITokens = %d, %v; want 1", n, err)
	}
	if again, err := os.ReadFile(path); err != nil || string(again) != string(content) {
		t.Errorf("second call changed the token file: %q, %v", again, err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		names := make([]string, len(entries))
		for i, e := range entries {
			names[i] = e.Name()
		}
		t.Errorf("dir holds %v, want only %s (no temporary files left behind)", names, auth.AdminTokenFile)
	}
}

func TestEnsureAdminTokenSkipsWhenTokensExist(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	_, hash, err := auth.NewSecret(auth.APITokenPrefix)
	if err != nil {
		t.Fatal(err)
	}
	// Any token, even a revoked viewer one, means someone set the store up.
	if err := st.CreateAPIToken(ctx, store.APIToken{ID: "at-existing", Hash: hash, Role: "viewer", CreatedAt: t0, RevokedAt: t0}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path, err := auth.EnsureAdminToken(ctx, st, dir, t0)
	if err != nil || path != "" {
		t.Fatalf("EnsureAdminToken = %q, %v; want \"\", nil", path, err)
	}
	if _, err := os.Stat(filepath.Join(dir, auth.AdminTokenFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("admin token file written although tokens exist: %v", err)
	}
}

func TestEnsureAdminTokenUnwritableDir(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	dir := filepath.Join(t.TempDir(), "missing")
	if _, err := auth.EnsureAdminToken(ctx, st, dir, t0); err == nil {
		t.Fatal("EnsureAdminToken into a missing directory succeeded")
	}
	// No token whose secret nobody has.
	if n, err := st.CountAPITokens(ctx); err != nil || n != 0 {
		t.Errorf("CountAPITokens = %d, %v; want 0 after a failed bootstrap", n, err)
	}
}

func TestEnsureAdminTokenStoreError(t *testing.T) {
	st := openStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := auth.EnsureAdminToken(ctx, st, t.TempDir(), t0)
	if err == nil || !strings.Contains(err.Error(), "bootstrap admin token") {
		t.Errorf("EnsureAdminToken with a cancelled context = %v, want a bootstrap admin token error", err)
	}
}
