package store

import (
	"testing"
	"time"
)

func TestJoinTokenLiveAndAdmits(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name       string
		tok        JoinToken
		wantLive   bool
		wantAdmits bool
	}{
		{"fresh", JoinToken{MaxUses: 2, Uses: 1, ExpiresAt: now.Add(time.Second)}, true, true},
		{"used up", JoinToken{MaxUses: 2, Uses: 2, ExpiresAt: now.Add(time.Second)}, true, false},
		{"expires now", JoinToken{MaxUses: 2, ExpiresAt: now}, false, false},
		{"expired", JoinToken{MaxUses: 2, ExpiresAt: now.Add(-time.Second)}, false, false},
		{"revoked", JoinToken{MaxUses: 2, ExpiresAt: now.Add(time.Hour), RevokedAt: now.Add(-time.Minute)}, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.tok.Live(now); got != tt.wantLive {
				t.Errorf("Live = %v, want %v", got, tt.wantLive)
			}
			if got := tt.tok.Admits(now); got != tt.wantAdmits {
				t.Errorf("Admits = %v, want %v", got, tt.wantAdmits)
			}
		})
	}
}

func TestAPITokenActive(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name string
		tok  APIToken
		want bool
	}{
		{"no expiry", APIToken{}, true},
		{"expires later", APIToken{ExpiresAt: now.Add(time.Second)}, true},
		{"expires now", APIToken{ExpiresAt: now}, false},
		{"revoked", APIToken{RevokedAt: now.Add(-time.Second)}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.tok.Active(now); got != tt.want {
				t.Errorf("Active = %v, want %v", got, tt.want)
			}
		})
	}
}
