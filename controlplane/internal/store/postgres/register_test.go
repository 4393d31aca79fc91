package postgres

import (
	"context"
	"errors"
	"testing"
	"time"

	"flotilla.dev/controlplane/internal/store"
)

// TestRegisterAgentRechecksTokenAfterBuild checks that what the token's read
// found is checked again when the use is taken: build runs between the two
// without the token's row locked, so a token revoked or used up meanwhile
// must still refuse the agent, and write nothing.
func TestRegisterAgentRechecksTokenAfterBuild(t *testing.T) {
	now := time.Date(2026, 12, 7, 5, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		name, meanwhile string
		wantUses        int
	}{
		{"revoked", `UPDATE join_tokens SET revoked_at = 1 WHERE id = 'tok'`, 0},
		{"used up", `UPDATE join_tokens SET uses = max_uses WHERE id = 'tok'`, 2},
		{"unchanged", ``, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := openTestStore(t)
			ctx := context.Background()
			tok := store.JoinToken{ID: "tok", Hash: []byte("hash-" + c.name), Description: "d", MaxUses: 2,
				CreatedAt: now.Add(-time.Hour), ExpiresAt: now.Add(time.Hour)}
			if err := s.CreateJoinToken(ctx, tok); err != nil {
				t.Fatal(err)
			}
			_, err := s.RegisterAgent(ctx, tok.Hash, now, func(store.JoinToken) (store.Agent, error) {
				if c.meanwhile != "" {
					if _, err := s.pool.Exec(ctx, c.meanwhile); err != nil {
						return store.Agent{}, err
					}
				}
				return store.Agent{ID: "a", Hostname: "a", State: store.AgentDisconnected, RegisteredAt: now}, nil
			})
			_, getErr := s.GetAgent(ctx, "a")
			if c.meanwhile == "" {
				if err != nil || getErr != nil {
					t.Fatalf("RegisterAgent = %v, GetAgent = %v; want the agent stored", err, getErr)
				}
			} else {
				if !errors.Is(err, store.ErrJoinTokenInvalid) {
					t.Fatalf("RegisterAgent = %v, want ErrJoinTokenInvalid", err)
				}
				if !errors.Is(getErr, store.ErrNotFound) {
					t.Fatalf("GetAgent after a refused registration = %v, want ErrNotFound", getErr)
				}
			}
			got, err := s.GetJoinToken(ctx, "tok")
			if err != nil {
				t.Fatal(err)
			}
			if got.Uses != c.wantUses {
				t.Errorf("uses = %d, want %d", got.Uses, c.wantUses)
			}
		})
	}
}
