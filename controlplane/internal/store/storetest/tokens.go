package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"flotilla.dev/controlplane/internal/store"
)

func testJoinTokenRoundTrip(t *testing.T, open Opener) {
	revoked := newJoinToken("revoked", 5)
	revoked.Uses = 2
	revoked.RevokedAt = t0
	tests := []struct {
		name  string
		token store.JoinToken
	}{
		{"typical", newJoinToken("typical", 3)},
		{"revoked and partly used", revoked},
		{"zero values, nil labels", store.JoinToken{ID: "zero", Hash: hashOf("zero")}},
		{"empty labels stay non-nil", store.JoinToken{ID: "empty", Hash: hashOf("empty"), Labels: map[string]string{}}},
	}
	s := open(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mustCreateJoinToken(t, s, tt.token)
			assertEqual(t, mustGetJoinToken(t, s, tt.token.ID), tt.token)
		})
	}
}

func testCreateJoinTokenConflict(t *testing.T, open Opener) {
	s := open(t)
	existing := newJoinToken("tok", 1)
	mustCreateJoinToken(t, s, existing)

	sameID := newJoinToken("other", 1)
	sameID.ID = existing.ID
	sameHash := newJoinToken("other", 1)
	sameHash.Hash = existing.Hash
	for name, tok := range map[string]store.JoinToken{"same ID": sameID, "same hash": sameHash} {
		t.Run(name, func(t *testing.T) {
			if err := s.CreateJoinToken(context.Background(), tok); !errors.Is(err, store.ErrConflict) {
				t.Fatalf("CreateJoinToken = %v, want ErrConflict", err)
			}
		})
	}
	assertEqual(t, mustGetJoinToken(t, s, existing.ID), existing)
}

func testGetJoinTokenNotFound(t *testing.T, open Opener) {
	s := open(t)
	if _, err := s.GetJoinToken(context.Background(), "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetJoinToken = %v, want ErrNotFound", err)
	}
}

func newAPIToken(id string) store.APIToken {
	return store.APIToken{
		ID:        id,
		Name:      "operator " + id,
		Hash:      hashOf("api-" + id),
		Role:      "admin",
		CreatedAt: t0,
		ExpiresAt: t0.Add(90 * 24 * time.Hour),
	}
}

func testAPITokenRoundTrip(t *testing.T, open Opener) {
	revoked := newAPIToken("revoked")
	revoked.RevokedAt = t0.Add(time.Hour)
	tests := []struct {
		name  string
		token store.APIToken
	}{
		{"typical", newAPIToken("typical")},
		{"revoked", revoked},
		{"never expires", store.APIToken{ID: "forever", Name: "ci", Hash: hashOf("forever"), Role: "viewer", CreatedAt: t0}},
	}
	s := open(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.CreateAPIToken(context.Background(), tt.token); err != nil {
				t.Fatalf("CreateAPIToken: %v", err)
			}
			got, err := s.GetAPITokenByHash(context.Background(), tt.token.Hash)
			if err != nil {
				t.Fatalf("GetAPITokenByHash: %v", err)
			}
			assertEqual(t, got, tt.token)
		})
	}
}

func testCreateAPITokenConflict(t *testing.T, open Opener) {
	s := open(t)
	existing := newAPIToken("tok")
	if err := s.CreateAPIToken(context.Background(), existing); err != nil {
		t.Fatal(err)
	}
	sameID := newAPIToken("other")
	sameID.ID = existing.ID
	sameHash := newAPIToken("other")
	sameHash.Hash = existing.Hash
	for name, tok := range map[string]store.APIToken{"same ID": sameID, "same hash": sameHash} {
		t.Run(name, func(t *testing.T) {
			if err := s.CreateAPIToken(context.Background(), tok); !errors.Is(err, store.ErrConflict) {
				t.Fatalf("CreateAPIToken = %v, want ErrConflict", err)
			}
		})
	}
}

func testGetAPITokenByHashNotFound(t *testing.T, open Opener) {
	s := open(t)
	if _, err := s.GetAPITokenByHash(context.Background(), hashOf("nope")); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetAPITokenByHash = %v, want ErrNotFound", err)
	}
}

func testCountAPITokens(t *testing.T, open Opener) {
	s := open(t)
	ctx := context.Background()
	assertCount := func(want int) {
		t.Helper()
		n, err := s.CountAPITokens(ctx)
		if err != nil || n != want {
			t.Fatalf("CountAPITokens = %d, %v; want %d", n, err, want)
		}
	}
	assertCount(0)
	revoked := newAPIToken("b")
	revoked.RevokedAt = t0
	for _, tok := range []store.APIToken{newAPIToken("a"), revoked} {
		if err := s.CreateAPIToken(ctx, tok); err != nil {
			t.Fatal(err)
		}
	}
	assertCount(2) // revoked tokens count
}
