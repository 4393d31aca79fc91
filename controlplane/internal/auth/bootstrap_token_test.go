package auth_test

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"flotilla.dev/controlplane/internal/auth"
)

// readToken reads a bootstrap join token file, checking its mode.
func readToken(t *testing.T, path string) string {
	t.Helper()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := info.Mode().Perm(); perm != 0o600 {
		t.Errorf("%s has mode %04o, want 0600", path, perm)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^fjt_[a-z2-7]{52}\n$`).Match(b) {
		t.Fatalf("join token file = %q, want fjt_<52 base32 characters> and a newline", b)
	}
	return strings.TrimSpace(string(b))
}

func TestEnsureBootstrapJoinTokenCreatesKeepsAndReplaces(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	cfg := auth.BootstrapJoinToken{
		File: filepath.Join(t.TempDir(), "shared", "join.token"), TTL: 24 * time.Hour, MaxUses: 3, DataDir: t.TempDir(),
	}
	outcome, id, err := auth.EnsureBootstrapJoinToken(ctx, st, cfg, t0)
	if err != nil || outcome != auth.BootstrapCreated {
		t.Fatalf("first start: %q, %v; want created", outcome, err)
	}
	secret := readToken(t, cfg.File)
	tok, err := st.GetJoinToken(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if string(tok.Hash) != string(auth.HashSecret(secret)) || tok.MaxUses != 3 || !tok.ExpiresAt.Equal(t0.Add(24*time.Hour)) ||
		tok.Description != "bootstrap: "+cfg.File {
		t.Errorf("stored token = %+v; want the file's secret, 3 uses, expiring %s", tok, t0.Add(24*time.Hour))
	}
	if info, err := os.Stat(filepath.Join(cfg.DataDir, auth.BootstrapRecordFile)); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("record file: %v, %v; want it 0600", info, err)
	}

	// A restart with more than half the life left keeps the token.
	outcome, id2, err := auth.EnsureBootstrapJoinToken(ctx, st, cfg, t0.Add(11*time.Hour))
	if err != nil || outcome != auth.BootstrapKept || id2 != id || readToken(t, cfg.File) != secret {
		t.Fatalf("restart at 11h: %q %q, %v; want %q kept with the same secret", outcome, id2, err, id)
	}

	// Past half its life, it is replaced.
	outcome, id3, err := auth.EnsureBootstrapJoinToken(ctx, st, cfg, t0.Add(13*time.Hour))
	if err != nil || outcome != auth.BootstrapCreated || id3 == id || readToken(t, cfg.File) == secret {
		t.Fatalf("restart at 13h: %q %q, %v; want a new token and secret", outcome, id3, err)
	}

	// A store that lacks the recorded token (a new database) gets a new one.
	outcome, id4, err := auth.EnsureBootstrapJoinToken(ctx, openStore(t), cfg, t0.Add(13*time.Hour))
	if err != nil || outcome != auth.BootstrapCreated || id4 == id3 {
		t.Fatalf("new store: %q %q, %v; want a new token", outcome, id4, err)
	}
}

func TestEnsureBootstrapJoinTokenLeavesAForeignFileAlone(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	cfg := auth.BootstrapJoinToken{File: filepath.Join(t.TempDir(), "join.token"), TTL: time.Hour, MaxUses: 1, DataDir: t.TempDir()}
	const mine = "fjt_operators_own_token\n"
	if err := os.WriteFile(cfg.File, []byte(mine), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, when := range []string{"without a record", "with another token's record"} {
		outcome, id, err := auth.EnsureBootstrapJoinToken(ctx, st, cfg, t0)
		if err != nil || outcome != auth.BootstrapForeign || id != "" {
			t.Fatalf("%s: %q %q, %v; want foreign", when, outcome, id, err)
		}
		if b, _ := os.ReadFile(cfg.File); string(b) != mine {
			t.Fatalf("%s: the operator's file was changed to %q", when, b)
		}
		// Record a token of our own, then put the operator's file back.
		if err := os.Remove(cfg.File); err != nil {
			t.Fatal(err)
		}
		if _, _, err := auth.EnsureBootstrapJoinToken(ctx, st, cfg, t0); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(cfg.File, []byte(mine), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func TestEnsureBootstrapJoinTokenRefusesABadRecord(t *testing.T) {
	cfg := auth.BootstrapJoinToken{File: filepath.Join(t.TempDir(), "join.token"), TTL: time.Hour, MaxUses: 1, DataDir: t.TempDir()}
	if err := os.WriteFile(cfg.File, []byte("fjt_x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	rec := filepath.Join(cfg.DataDir, auth.BootstrapRecordFile)
	if err := os.WriteFile(rec, []byte("garbage\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err := auth.EnsureBootstrapJoinToken(context.Background(), openStore(t), cfg, t0)
	if err == nil || !strings.Contains(err.Error(), "bootstrap join token record "+rec) {
		t.Fatalf("err = %v, want it to name the record file", err)
	}
	if err := os.Chmod(rec, 0o644); err != nil {
		t.Fatal(err)
	}
	_, _, err = auth.EnsureBootstrapJoinToken(context.Background(), openStore(t), cfg, t0)
	if err == nil || !strings.Contains(err.Error(), "has mode 0644") {
		t.Fatalf("err = %v, want a record readable by others refused", err)
	}
}
